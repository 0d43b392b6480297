// Decides in Node, through the jco-transpiled component: the second host of the parity tests.
// stdin: [{"snapshot": text, "envelopes": [text, ...]}, ...]; stdout, in the same order:
// [{"load": [ok, text], "decisions": [[ok, text], ...]}, ...]. `result<string, string>`
// errors come back from jco as a thrown ComponentError carrying the error string as payload.
import { pathToFileURL } from "node:url";

const [, , module] = process.argv;
const engine = await import(pathToFileURL(module).href);

function call(fn, arg) {
  try {
    return [true, fn(arg)];
  } catch (err) {
    if (err && typeof err.payload === "string") return [false, err.payload];
    throw err;
  }
}

// read stdin as a stream: readFileSync(0) fails with EAGAIN on a large non-blocking pipe
let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const cases = JSON.parse(input);
const out = cases.map(({ snapshot, envelopes }) => ({
  load: call(engine.loadSnapshot, snapshot),
  decisions: envelopes.map((envelope) => call(engine.decide, envelope)),
}));
process.stdout.write(JSON.stringify(out));
