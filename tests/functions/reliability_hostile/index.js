// A Node.js function (so that the PYTHON* variables the test sets cannot break the function
// itself) whose folder holds Python modules that would take over any Python which honoured
// those variables: evil/ shadows json and sitecustomize, and prints to stdout.
exports.handler = async (event) => ({ echo: event });
