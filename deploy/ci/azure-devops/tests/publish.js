// One run of the task under azure-pipelines-task-lib's TaskMockRunner: inputs and variables come from the
// TFR_TEST_* environment the test sets; the task's HTTP calls reach the real registry server.
const path = require("path");
const tmrm = require("azure-pipelines-task-lib/mock-run");

const tmr = new tmrm.TaskMockRunner(path.join(__dirname, "..", "tfr-publish", "index.js"));
const inputs = JSON.parse(process.env.TFR_TEST_INPUTS || "{}");
for (const [name, value] of Object.entries(inputs)) {
  tmr.setInput(name, value);
}
tmr.run(true); // the real task library: its inputs, variables and endpoints are read from the environment
