// An ES module in a .js file, under "type": "module", in a nested folder (handler src/app.handler).
export const handler = async (event) => ({ style: 'esm-typemodule', event, url: import.meta.url });
