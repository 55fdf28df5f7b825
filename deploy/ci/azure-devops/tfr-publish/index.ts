// Azure Pipelines task: publish a Terraform module to a tfregistry.
//
// Authentication is a tfregistry service connection (a publish token), or trusted publishing: the job's
// OIDC token for a workload identity federation service connection, requested as Azure DevOps documents
// (POST $(System.OidcRequestUri)?api-version=7.1&serviceConnectionId=ID with the job's System.AccessToken;
// https://learn.microsoft.com/rest/api/azure/devops/distributedtask/oidctoken/create), is exchanged at
// POST /api/v1/trusted-publishing/token for a short-lived publish token (docs/trusted-publishing.md).
import * as tl from "azure-pipelines-task-lib/task";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const OIDC_API_VERSION = "7.1";

interface Credentials {
  url: string;
  token: string;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

async function errorText(response: Response): Promise<string> {
  const body = await response.text();
  try {
    const parsed = JSON.parse(body);
    if (parsed && typeof parsed.message === "string") {
      return parsed.message;
    }
  } catch {
    // not JSON: fall through
  }
  return body.slice(0, 500);
}

async function oidcToken(connectionId: string): Promise<string> {
  const requestUri = tl.getVariable("System.OidcRequestUri");
  const accessToken = tl.getVariable("System.AccessToken");
  if (!requestUri || !accessToken) {
    throw new Error("trusted publishing needs System.OidcRequestUri and System.AccessToken (allow scripts to access the OAuth token)");
  }
  const url = new URL(requestUri);
  url.searchParams.set("api-version", OIDC_API_VERSION);
  url.searchParams.set("serviceConnectionId", connectionId);
  const response = await fetch(url, {
    method: "POST",
    headers: { Authorization: `Bearer ${accessToken}`, "Content-Type": "application/json", Accept: "application/json" },
  });
  if (!response.ok) {
    throw new Error(`Azure DevOps' OIDC token endpoint answered HTTP ${response.status}`);
  }
  const body = (await response.json()) as { oidcToken?: string };
  if (!body.oidcToken) {
    throw new Error("Azure DevOps' OIDC token endpoint answered without an oidcToken");
  }
  tl.setSecret(body.oidcToken);
  return body.oidcToken;
}

async function credentials(namespace: string): Promise<Credentials> {
  if (tl.getInput("authentication", true) === "oidc") {
    const url = trimSlash(tl.getInput("registryUrl", true)!);
    const idToken = await oidcToken(tl.getInput("federatedConnection", true)!);
    const response = await fetch(`${url}/api/v1/trusted-publishing/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token: idToken, namespace }),
    });
    if (response.status !== 201) {
      throw new Error(`the registry refused the OIDC token (${response.status}): ${await errorText(response)}`);
    }
    const answer = (await response.json()) as { token: string; packages: string[]; expires_at: string };
    tl.setSecret(answer.token);
    console.log(`trusted publishing: publish token for ${namespace} (${answer.packages.join(", ")}) until ${answer.expires_at}`);
    return { url, token: answer.token };
  }
  const connection = tl.getInput("registryConnection", true)!;
  const token = tl.getEndpointAuthorizationParameter(connection, "apitoken", false)!;
  tl.setSecret(token);
  return { url: trimSlash(tl.getEndpointUrl(connection, false)!), token };
}

function moduleVersion(): string {
  const given = (tl.getInput("version", false) || "").trim();
  if (given) {
    return given;
  }
  const branch = tl.getVariable("Build.SourceBranch") || "";
  if (!branch.startsWith("refs/tags/")) {
    throw new Error("no version input and the run was not triggered by a tag (Build.SourceBranch refs/tags/...)");
  }
  return branch.slice("refs/tags/".length).replace(/^v/, "");
}

function archiveOf(source: string, workDir: string): string {
  if (fs.statSync(source).isFile()) {
    return source;
  }
  const archive = path.join(workDir, "module.tar.gz");
  // tar is on every agent image (GNU tar on Linux and macOS, bsdtar on Windows); .terraform is never published
  execFileSync("tar", ["-czf", archive, "--exclude=.terraform", "--exclude=.git", "-C", source, "."]);
  return archive;
}

async function run(): Promise<void> {
  try {
    const namespace = tl.getInput("namespace", true)!;
    const name = tl.getInput("name", true)!;
    const system = tl.getInput("system", true)!;
    const version = moduleVersion();
    const source = tl.getPathInput("path", true, true)!;
    const { url, token } = await credentials(namespace);
    const workDir = fs.mkdtempSync(path.join(tl.getVariable("Agent.TempDirectory") || os.tmpdir(), "tfr-"));
    const archive = archiveOf(source, workDir);
    const form = new FormData();
    form.set("namespace", namespace);
    form.set("name", name);
    form.set("system", system);
    form.set("version", version);
    form.set("description", tl.getInput("description", false) || "");
    form.set("archive", new Blob([fs.readFileSync(archive)], { type: "application/gzip" }), "module.tar.gz");
    const response = await fetch(`${url}/api/v1/modules`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      body: form,
    });
    if (response.status !== 201 && response.status !== 200) {
      throw new Error(`the registry answered ${response.status}: ${await errorText(response)}`);
    }
    const body = (await response.json()) as { id: string; sha256: string };
    const verb = response.status === 201 ? "published" : "already published (identical)";
    console.log(`${verb}: ${body.id} sha256=${body.sha256}`);
    tl.setResult(tl.TaskResult.Succeeded, `${verb} ${body.id}`);
  } catch (err) {
    tl.setResult(tl.TaskResult.Failed, err instanceof Error ? err.message : String(err));
  }
}

run();
