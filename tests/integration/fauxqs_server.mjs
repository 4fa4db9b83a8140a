// Starts the fauxqs SQS/SNS emulator on loopback for the integration
// tests. Its own CLI binds every interface, so we build the app ourselves
// and listen on 127.0.0.1 only.
//
//   node fauxqs_server.mjs [--port N]     (default 0: a free port)
//
// Prints one line "fauxqs listening url=http://127.0.0.1:PORT" on stdout
// once it accepts requests, then serves until SIGTERM or SIGINT, when it
// closes the server (at most 2 s, for long polls in flight) and exits 0. State is in memory only: a restart on
// the same port is an empty service, which is what the tests want.
import { buildApp } from 'fauxqs';

function parsePort(argv) {
  let port = Number(process.env.FAUXQS_PORT ?? 0);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port' && i + 1 < argv.length) port = Number(argv[++i]);
    else if (a.startsWith('--port=')) port = Number(a.slice(7));
    else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`bad port ${port}`);
  return port;
}

async function main() {
  const port = parsePort(process.argv.slice(2));
  const app = buildApp({ logger: false });
  let closing = false;
  const stop = async () => {
    if (closing) return;
    closing = true;
    // Long polls in flight would hold close() for up to their wait time.
    setTimeout(() => process.exit(0), 2000).unref();
    try {
      await app.close();
    } finally {
      process.exit(0);
    }
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await app.listen({ port, host: '127.0.0.1' });
  const real = app.server.address().port;
  process.stdout.write(`fauxqs listening url=http://127.0.0.1:${real}\n`);
}

main().catch((err) => {
  process.stderr.write(`fauxqs_server: ${err.stack || err}\n`);
  process.exit(1);
});
