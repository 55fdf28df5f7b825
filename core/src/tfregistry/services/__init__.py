"""Domain services: plain functions over a SQLAlchemy session, no Flask imports."""


class ServiceError(Exception):
    """A request the domain refuses; ``status`` is the HTTP status the web layer answers with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Forbidden(ServiceError):
    status = 403
