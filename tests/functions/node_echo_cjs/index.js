// CommonJS (no package.json "type"): several handler styles over one echo.
const os = require('node:os');

function echo(event, context, style) {
  return {
    style,
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: context.memoryLimitInMB,
    invokedFunctionArn: context.invokedFunctionArn,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remainingMs: context.getRemainingTimeInMillis(),
    waitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
    traceId: process.env._X_AMZN_TRACE_ID ?? null,
    pid: process.pid,
    hostname: os.hostname(),
  };
}

exports.handler = async (event, context) => {
  console.log('echo async', JSON.stringify(event));
  return echo(event, context, 'async');
};

// Callback handlers: the result is serialized when the runtime answers. Waiting for an empty
// event loop (the default), the answer comes after the timer has marked the result.
exports.callback = (event, context, callback) => {
  const result = { ...echo(event, context, 'callback'), timerRan: false };
  setTimeout(() => {
    result.timerRan = true;
  }, 50);
  callback(null, result);
};

// Not waiting: the answer goes at once, before the timer runs.
exports.callbackNoWait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  const result = { ...echo(event, context, 'callbackNoWait'), timerRan: false };
  setTimeout(() => {
    result.timerRan = true;
  }, 50);
  callback(null, result);
};

exports.nested = { deeper: { handler: async (event, context) => echo(event, context, 'nested') } };

// Throws when the event asks, so that a test can show the environment goes on afterwards.
exports.throws = async (event, context) => {
  if (event?.throw === false) return echo(event, context, 'throws');
  throw new TypeError('boom from the handler');
};

exports.callbackError = (event, context, callback) => callback(new RangeError('called back with an error'));

exports.logs = async (event) => {
  console.log('a log line');
  console.info('an info line');
  console.warn('a warn line');
  console.error('an error line', { n: 1 });
  console.debug('a debug line');
  console.log('first\nsecond');
  return event;
};

exports.notAFunction = 42;

// Errors no handler catches end the runtime process (exit 129 and 128 on Lambda).
exports.uncaught = () => {
  setTimeout(() => {
    throw new Error('thrown from a timer');
  }, 10);
};

exports.unhandledRejection = async () => {
  Promise.reject(new Error('nobody catches this'));
  await new Promise((resolve) => setTimeout(resolve, 50));
  return 'too late';
};
