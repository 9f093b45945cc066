// The baseline function for cold start, duration and Max Memory Used: it does nothing, so every
// difference between a run with the layer and one without is the monitor's.
exports.handler = async () => ({ ok: true });
