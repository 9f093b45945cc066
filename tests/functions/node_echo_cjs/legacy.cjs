// A .cjs module found by the handler "legacy.handler" (no legacy.js next to it).
module.exports.handler = (event, context) => context.succeed({ style: 'cjs-succeed', event });
