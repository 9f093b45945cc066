// Reports what a Node.js function can see of its environment: variables, identity, processes,
// loaded libraries, and which places it can write to. Event (optional): paths (more to test).
const dns = require('node:dns');
const fs = require('node:fs');
const path = require('node:path');

const PROBE_DIRS = [
  '/', '/tmp', '/var/task', '/opt', '/var/runtime', '/var/lang', '/etc', '/root', '/home',
  '/usr', '/usr/lib', '/var', '/var/tmp', '/dev/shm', '/mnt', '/run', '/srv', '/proc/sys',
];

function canCreateIn(dir) {
  const probe = path.join(dir, `.write-probe-${process.pid}`);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch {
    return false;
  }
  fs.unlinkSync(probe);
  return true;
}

function isDir(dir) {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function processes() {
  const found = {};
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      found[entry] = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      // ended while we looked
    }
  }
  return found;
}

function mappedFiles() {
  const paths = new Set();
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 6 && fields[5].startsWith('/')) paths.add(fields.slice(5).join(' '));
  }
  return [...paths].sort();
}

async function resolve(name) {
  try {
    return (await dns.promises.lookup(name, { family: 4 })).address;
  } catch {
    return null;
  }
}

exports.handler = async (event) => {
  const mounts = fs.readdirSync('/mnt').map((name) => path.join('/mnt', name));
  const dirs = [...PROBE_DIRS, ...mounts, ...(event?.paths ?? [])];
  return {
    env: { ...process.env },
    uid: process.getuid(),
    gid: process.getgid(),
    euid: process.geteuid(),
    groups: process.getgroups(),
    pid: process.pid,
    processes: processes(),
    maps: mappedFiles(),
    cwd: process.cwd(),
    writable_dirs: dirs.filter((dir) => isDir(dir) && canCreateIn(dir)),
    sandbox_localdomain: await resolve('sandbox.localdomain'),
    mnt: mounts,
  };
};
