// An ES module handler (.mjs), async and callback.
import os from 'node:os';

export const handler = async (event, context) => ({
  style: 'esm-async',
  event,
  requestId: context.awsRequestId,
  hostname: os.hostname(),
});

export function callback(event, context, done) {
  setTimeout(() => done(null, { style: 'esm-callback', event }), 10);
}
