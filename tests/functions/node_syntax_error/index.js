// Deliberately not JavaScript: loading it is a Runtime.UserCodeSyntaxError.
exports.handler = async (event) => {
  return { event ;
};
