// The Node.js runtime client of lambda-sandbox (nodejs20.x): what /var/runtime/index.mjs does on
// Lambda, in one file with no dependencies. It loads the handler named by _HANDLER from
// LAMBDA_TASK_ROOT, then serves invocations from the Runtime API at AWS_LAMBDA_RUNTIME_API:
//   GET /runtime/invocation/next -> handler(event, context[, callback])
//   -> POST /runtime/invocation/{id}/response or .../{id}/error
// A failure to load the handler goes to POST /runtime/init/error and ends the process.
// Errors, log lines and exit statuses follow AWS's client (aws-lambda-nodejs-runtime-interface-
// client) so that what a user sees here is what they would see on Lambda.

import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const require = createRequire(import.meta.url);
const env = process.env;
const [apiHost, apiPort] = (env.AWS_LAMBDA_RUNTIME_API ?? '').split(':');
// One socket, kept alive: the client talks to the API strictly one request at a time.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// Exit statuses of AWS's client, which Lambda reports as "Runtime.ExitError".
const EXIT_UNCAUGHT_EXCEPTION = 129;
const EXIT_UNHANDLED_REJECTION = 128;

// ---- errors, shaped as Lambda shows them ----------------------------------------------------

class RuntimeError extends Error {
  // `reason` may be another error: like AWS's client, its "Name: message" becomes our message.
  constructor(name, reason) {
    super(String(reason));
    this.name = name;
  }
}

function isErrorLike(value) {
  return (
    util.types.isNativeError(value) ||
    (value !== null &&
      typeof value === 'object' &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string')
  );
}

// The body of .../error and /init/error.
function errorBody(error) {
  if (isErrorLike(error)) {
    return { errorType: error.name, errorMessage: error.message, trace: error.stack.split('\n') };
  }
  if (error === undefined || error === null) {
    return { errorType: 'handled', errorMessage: String(error), trace: [] };
  }
  return { errorType: typeof error, errorMessage: String(error), trace: [] };
}

// What console.error shows for an error: a tab, then JSON with "stack" as an array of lines.
function formatError(error) {
  const { errorType, errorMessage, trace } = errorBody(error);
  return '\t' + JSON.stringify({ errorType, errorMessage, stack: trace });
}

// ---- logs: "<ISO time>\t<request id>\t<LEVEL>\t<message>", one line per call -----------------

let currentRequestId; // "undefined" in log lines written during Init, as on Lambda

function patchConsole() {
  const levels = {
    log: 'INFO',
    info: 'INFO',
    debug: 'DEBUG',
    warn: 'WARN',
    error: 'ERROR',
    trace: 'TRACE',
    fatal: 'FATAL',
  };
  for (const [method, level] of Object.entries(levels)) {
    console[method] = (...args) => {
      const message = util.format(...args);
      // A multi-line message stays one log event: Lambda's text format turns \n into \r.
      const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message}`;
      // All levels go to stdout, as AWS's client writes them when there is no telemetry fd.
      process.stdout.write(line.replace(/\n/g, '\r') + '\n');
    };
  }
}

// ---- the Runtime API ------------------------------------------------------------------------

function request(method, urlPath, body = undefined, headers = {}, retried = false) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { agent, host: apiHost, port: apiPort, method, path: `/2018-06-01${urlPath}`, headers },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', (err) => {
      // The server may have closed the idle kept-alive socket just as we reused it (Node's
      // documented race for keep-alive agents); the request never reached it, so send it again.
      if (req.reusedSocket && err.code === 'ECONNRESET' && !retried) {
        request(method, urlPath, body, headers, true).then(resolve, reject);
      } else {
        reject(err);
      }
    });
    req.end(body);
  });
}

function postJson(urlPath, value, headers = {}) {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  const all = { 'Content-Type': 'application/json', 'Content-Length': body.length, ...headers };
  return request('POST', urlPath, body, all);
}

function postError(urlPath, error) {
  const body = errorBody(error);
  return postJson(urlPath, body, { 'Lambda-Runtime-Function-Error-Type': body.errorType });
}

// ---- loading the handler --------------------------------------------------------------------

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

// Whether the nearest package.json above `dir` says "type": "module" (then .js is an ES module).
function underTypeModule(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    const manifest = path.join(d, 'package.json');
    if (isFile(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (d === path.dirname(d)) return false;
  }
}

// The module for "dir/file" in the order AWS's client tries: the file itself, file.js
// (CommonJS unless "type": "module"), file.mjs, file.cjs, then Node's own resolution from the
// task root (NODE_PATH, node_modules).
async function loadModule(taskRoot, moduleDir, moduleName) {
  const base = path.resolve(taskRoot, moduleDir, moduleName);
  const esModule = (file) => import(pathToFileURL(file).href);
  if (isFile(base)) return require(base);
  if (isFile(`${base}.js`)) {
    return underTypeModule(path.dirname(base)) ? esModule(`${base}.js`) : require(`${base}.js`);
  }
  if (isFile(`${base}.mjs`)) return esModule(`${base}.mjs`);
  if (isFile(`${base}.cjs`)) return require(`${base}.cjs`);
  const nodePath = require.resolve(path.join(moduleDir, moduleName), {
    paths: [taskRoot, path.resolve(taskRoot, moduleDir)],
  });
  return require(nodePath);
}

// "dir/file.a.b" -> the function at exports.a.b of dir/file.
async function loadHandler(taskRoot, handlerString) {
  const slash = handlerString.lastIndexOf('/');
  const moduleDir = handlerString.slice(0, slash + 1);
  const match = /^([^.]*)\.(.*)$/.exec(handlerString.slice(slash + 1));
  if (!match) throw new RuntimeError('Runtime.MalformedHandlerName', 'Bad handler');
  const [, moduleName, exportPath] = match;
  let module;
  try {
    module = await loadModule(taskRoot, moduleDir, moduleName);
  } catch (err) {
    if (err instanceof SyntaxError) throw new RuntimeError('Runtime.UserCodeSyntaxError', err);
    if (err?.code === 'MODULE_NOT_FOUND') throw new RuntimeError('Runtime.ImportModuleError', err);
    throw err;
  }
  const handler = exportPath.split('.').reduce((value, key) => value?.[key], module);
  if (handler === undefined || handler === null) {
    throw new RuntimeError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new RuntimeError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  }
  return handler;
}

// ---- invocations ----------------------------------------------------------------------------

// What runs when the event loop has nothing left to do (Node's 'beforeExit'): the pending answer
// of a callback handler that waits for an empty event loop, or, for a handler that neither
// returned a promise nor called back, a null response.
let onEmptyEventLoop = null;
process.on('beforeExit', () => {
  const action = onEmptyEventLoop;
  onEmptyEventLoop = null;
  if (action) action();
});

function parseJson(text) {
  return text ? JSON.parse(text) : undefined;
}

function makeContext(requestId, headers, answer) {
  let waitsForEmptyEventLoop = true;
  const deadlineMs = Number(headers['lambda-runtime-deadline-ms']);
  return {
    get callbackWaitsForEmptyEventLoop() {
      return waitsForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitsForEmptyEventLoop = Boolean(value);
    },
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    awsRequestId: requestId,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: parseJson(headers['lambda-runtime-cognito-identity']),
    clientContext: parseJson(headers['lambda-runtime-client-context']),
    getRemainingTimeInMillis: () => Math.max(deadlineMs - Date.now(), 0),
    // The legacy completion methods answer at once, without waiting for the event loop.
    done: (error, result) => answer(error, result),
    succeed: (result) => answer(null, result),
    fail: (error) => answer(error ?? new RuntimeError('handled', 'handled'), undefined),
  };
}

async function invokeOnce(handler) {
  const next = await request('GET', '/runtime/invocation/next');
  if (next.status !== 200) {
    throw new Error(`GET /runtime/invocation/next answered ${next.status}: ${next.body}`);
  }
  const requestId = next.headers['lambda-runtime-aws-request-id'];
  const traceId = next.headers['lambda-runtime-trace-id'];
  if (traceId) env._X_AMZN_TRACE_ID = traceId;
  else delete env._X_AMZN_TRACE_ID;
  currentRequestId = requestId;

  return new Promise((resolve) => {
    let answered = false;
    const answer = (error, result) => {
      if (answered) return;
      answered = true;
      onEmptyEventLoop = null;
      const failed = error !== null && error !== undefined;
      let posting;
      if (failed) {
        console.error('Invoke Error', formatError(error));
        posting = postError(`/runtime/invocation/${requestId}/error`, error);
      } else {
        try {
          posting = postJson(`/runtime/invocation/${requestId}/response`, result ?? null);
        } catch (serializeError) {
          posting = postError(`/runtime/invocation/${requestId}/error`, serializeError);
        }
      }
      posting.then(() => resolve(), fatal);
    };
    const callback = (error, result) => {
      if (answered) return; // a late callback must not touch the next invocation's state
      if (context.callbackWaitsForEmptyEventLoop) onEmptyEventLoop = () => answer(error, result);
      else answer(error, result);
    };
    const context = makeContext(requestId, next.headers, answer);
    onEmptyEventLoop = () => answer(null, null);
    try {
      const event = JSON.parse(next.body.toString('utf8'));
      const returned = handler(event, context, callback);
      if (returned && typeof returned.then === 'function') {
        returned.then(
          (result) => answer(null, result),
          (error) => answer(error ?? new RuntimeError('handled', String(error)), undefined),
        );
      }
    } catch (error) {
      callback(error);
    }
  });
}

// A failure of the runtime client itself (the API went away): nothing left to report to.
function fatal(error) {
  process.stderr.write(`lambda-sandbox node runtime: ${error?.stack ?? error}\n`);
  process.exit(1);
}

// An error no handler caught: reported against the latest invocation (or Init, before the first),
// then the process ends, and Lambda starts a new environment for the next invocation.
function crash(label, error, exitStatus) {
  console.error(label, formatError(error));
  const urlPath = currentRequestId
    ? `/runtime/invocation/${currentRequestId}/error`
    : '/runtime/init/error';
  postError(urlPath, error).finally(() => process.exit(exitStatus));
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (error) =>
    crash('Uncaught Exception', error, EXIT_UNCAUGHT_EXCEPTION),
  );
  process.on('unhandledRejection', (reason) => {
    const error = new RuntimeError('Runtime.UnhandledPromiseRejection', reason);
    crash('Unhandled Promise Rejection', error, EXIT_UNHANDLED_REJECTION);
  });
  let handler;
  try {
    handler = await loadHandler(env.LAMBDA_TASK_ROOT ?? process.cwd(), env._HANDLER ?? '');
  } catch (error) {
    crash('Uncaught Exception', error, EXIT_UNCAUGHT_EXCEPTION);
    return;
  }
  for (;;) await invokeOnce(handler);
}

main().catch(fatal);
