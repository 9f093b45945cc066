// Appends MiB to a file in /tmp on every invocation and returns the file's size and the process's
// own RSS: the page cache of /tmp raises Max Memory Used while RSS stays flat.
// Event (all optional): mib (default WRITE_MIB or 10), path (default WRITE_PATH or
// /tmp/node_tmp_writer.bin), delete (remove the file before returning), drop_cache (flush the file
// and drop its pages from the page cache before returning).
const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

const MIB = 1024 * 1024;
// Allocated once, so that the writes themselves add nothing to RSS.
const chunk = Buffer.alloc(MIB, 0x5a);

// Node has no posix_fadvise; GNU dd does exactly POSIX_FADV_DONTNEED on the whole file with
// iflag=nocache count=0 (documented in dd's manual).
function dropFromPageCache(file) {
  execFileSync('/usr/bin/dd', [`if=${file}`, 'iflag=nocache', 'count=0'], { stdio: 'ignore' });
}

exports.handler = async (event) => {
  const options = event ?? {};
  const mib = Number(options.mib ?? process.env.WRITE_MIB ?? 10);
  const file = options.path ?? process.env.WRITE_PATH ?? '/tmp/node_tmp_writer.bin';
  const fd = fs.openSync(file, 'a');
  try {
    for (let i = 0; i < mib; i += 1) fs.writeSync(fd, chunk);
    // Dirty pages cannot be dropped: write them out first.
    if (options.drop_cache) fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const size = fs.statSync(file).size;
  if (options.drop_cache) dropFromPageCache(file);
  if (options.delete) fs.unlinkSync(file);
  return {
    size,
    rss: process.memoryUsage().rss,
    deleted: Boolean(options.delete),
    droppedCache: Boolean(options.drop_cache),
  };
};
