// Runs tests/publish.js with azure-pipelines-task-lib's MockTestRunner and prints what it saw as JSON.
const path = require("path");
const ttm = require("azure-pipelines-task-lib/mock-test");

(async () => {
  const runner = new ttm.MockTestRunner();
  await runner.LoadAsync(path.join(__dirname, "publish.js"), path.join(__dirname, "..", "tfr-publish", "task.json"));
  await runner.runAsync();
  console.log(JSON.stringify({ succeeded: runner.succeeded, errorIssues: runner.errorIssues,
                               warningIssues: runner.warningIssues, stdout: runner.stdout, stderr: runner.stderr }));
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
