// Independent check of qpki's ML-DSA and SLH-DSA signatures with
// @noble/post-quantum (pinned in package-lock.json).
//
//   node pq.mjs verify <alg> <pub.bin> <msg.bin> <sig.bin> [<alg> <pub> <msg> <sig> ...]
//       print OK or INVALID per signature (pure, empty context);
//       exit 0 if all verify, 1 if any does not.
//   node pq.mjs sign <alg> <msg.bin> <pub-out.bin> <sig-out.bin> [...]
//       make a fresh key per entry, sign msg, write the raw public key and
//       the signature.
//
// <alg> is a qpki algorithm name: ml-dsa-44 ... slh-dsa-shake-256f. One
// process handles many entries: loading the library costs more than a
// signature.
import { readFileSync, writeFileSync } from 'node:fs';
import * as mldsa from '@noble/post-quantum/ml-dsa.js';
import * as slhdsa from '@noble/post-quantum/slh-dsa.js';

function scheme(alg) {
  let m = /^ml-dsa-(44|65|87)$/.exec(alg);
  if (m) return mldsa[`ml_dsa${m[1]}`];
  m = /^slh-dsa-(sha2|shake)-(128|192|256)([sf])$/.exec(alg);
  if (m) return slhdsa[`slh_dsa_${m[1]}_${m[2]}${m[3]}`];
  throw new Error(`unknown algorithm ${alg}`);
}

const read = (f) => new Uint8Array(readFileSync(f));
const [cmd, ...args] = process.argv.slice(2);
try {
  if (!['verify', 'sign'].includes(cmd) || args.length === 0 || args.length % 4 !== 0) {
    throw new Error('usage: pq.mjs verify (<alg> <pub> <msg> <sig>)... | sign (<alg> <msg> <pub-out> <sig-out>)...');
  }
  let allOK = true;
  for (let i = 0; i < args.length; i += 4) {
    const [alg, a, b, c] = args.slice(i, i + 4);
    const s = scheme(alg);
    if (cmd === 'verify') {
      const ok = s.verify(read(c), read(b), read(a));
      console.log(ok ? 'OK' : 'INVALID');
      allOK &&= ok;
    } else {
      const { secretKey, publicKey } = s.keygen();
      writeFileSync(b, publicKey);
      writeFileSync(c, s.sign(read(a), secretKey));
      console.log('SIGNED');
    }
  }
  process.exit(allOK ? 0 : 1);
} catch (e) {
  console.error(e.message);
  process.exit(2);
}
