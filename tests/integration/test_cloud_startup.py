"""A cloud backend that cannot work stops start-up with a message naming what to fix."""

from __future__ import annotations

import pytest
import tfregistry_storage_s3.plugin as s3_plugin

from tfregistry import StartupError


def test_missing_bucket_stops_startup(app_factory):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        config = {"storage.backend": "s3", "storage.s3.bucket": "no-such-bucket", "storage.s3.region": "us-east-1",
                  "storage.s3.endpoint_url": f"http://{host}:{port}", "storage.s3.path_style": True,
                  "storage.s3.access_key_id": "t", "storage.s3.secret_access_key": "t"}
        with pytest.raises(StartupError, match=r"'s3' is not usable: s3: bucket 'no-such-bucket' does not exist"):
            app_factory(config, plugins=(s3_plugin,))
    finally:
        server.stop()


def test_missing_required_setting_stops_startup(app_factory):
    with pytest.raises(StartupError, match=r"storage.s3.bucket \(TFR_STORAGE__S3__BUCKET\) is required"):
        app_factory({"storage.backend": "s3"}, plugins=(s3_plugin,))
