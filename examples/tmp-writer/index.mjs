// The example of the README and the demo: every invocation writes a new 10 MiB file to /tmp and
// leaves it there, as a function that caches downloads or unpacks archives would. The page cache
// of those files is charged to the execution environment, so Max Memory Used climbs from one
// warm invocation to the next while the function's own RSS stays flat.
import { closeSync, openSync, readdirSync, writeSync } from 'node:fs';

const MIB = 1024 * 1024;
const WRITE_MIB = Number(process.env.WRITE_MIB ?? 10);
// One buffer, allocated once, so that the writes add nothing to the function's RSS.
const chunk = Buffer.alloc(MIB, 0x5a);
let invocation = 0;

export const handler = async () => {
  invocation += 1;
  const path = `/tmp/tmp-writer-${invocation}.bin`;
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < WRITE_MIB; i += 1) writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  const files = readdirSync('/tmp').filter((name) => name.startsWith('tmp-writer-')).length;
  console.log(`wrote ${WRITE_MIB} MiB to ${path}; /tmp holds ${files} such files`);
  return { path, mib: WRITE_MIB, files };
};
