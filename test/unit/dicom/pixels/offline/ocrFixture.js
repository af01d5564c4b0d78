/**
 * Child process of tesseractOffline.test.ts, run under denyNetwork.js: OCRs the first frame of
 * a real DICOM fixture with the production TextDetector and prints, as one JSON line, the words
 * found. With `--probe` it instead tries each network API once (each must be blocked).
 *
 * The project's TypeScript is compiled on require with the typescript package (no build, no
 * loader that could fetch anything).
 */
/* eslint-disable @typescript-eslint/no-require-imports */
/* global require, process, fetch */
'use strict';
const fs = require('node:fs');
const ts = require('typescript');

require.extensions['.ts'] = (module, filename) => {
  const out = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
    fileName: filename,
    compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true },
  });
  module._compile(out.outputText, filename);
};

async function probe() {
  const tries = {
    fetch: () => fetch('http://127.0.0.1:9/'),
    'net.connect': () => require('node:net').connect(9, '127.0.0.1'),
    'new net.Socket().connect': () => new (require('node:net').Socket)().connect(9, '127.0.0.1'),
    'dns.lookup': () => require('node:dns').lookup('example.org', () => undefined),
    'dns.promises.lookup': () => require('node:dns').promises.lookup('example.org'),
    'http.get': () => require('node:http').get('http://127.0.0.1:9/'),
    'https.request': () => require('node:https').request('https://127.0.0.1:9/'),
  };
  const blocked = [];
  for (const [name, attempt] of Object.entries(tries)) {
    try {
      await attempt();
    } catch (e) {
      if (/blocked by the test/.test(e.message)) blocked.push(name);
    }
  }
  return { blocked };
}

async function ocr(fixture, root) {
  const { parseDicomBuffer } = require(`${root}/shared/dicom/parser.ts`);
  const { pixelGeometry } = require(`${root}/shared/dicom/pixels/blackout.ts`);
  const { grayFrame, pixelLook } = require(`${root}/shared/dicom/pixels/grayFrame.ts`);
  const { TesseractDetector } = require(`${root}/shared/dicom/pixels/tesseractDetector.ts`);
  const parsed = await parseDicomBuffer(fs.readFileSync(fixture));
  const layout = pixelGeometry(parsed.dataset, parsed.encoding.littleEndian, parsed.pixelData);
  if ('reason' in layout) throw new Error(layout.reason);
  const g = layout.geometry;
  const look = pixelLook(parsed.dataset, parsed.encoding.littleEndian, g);
  if ('reason' in look) throw new Error(look.reason);
  const detector = new TesseractDetector({ workers: 1 });
  try {
    const words = await detector.detect(grayFrame(parsed.pixelValue.subarray(0, g.frameBytes), g, look.look));
    return { words: words.map((w) => w.text) };
  } finally {
    await detector.close();
  }
}

const [mode, fixture, root] = process.argv.slice(2);
(mode === '--probe' ? probe() : ocr(fixture, root)).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  },
  (e) => {
    process.stderr.write(`${e && e.stack ? e.stack : String(e)}\n`);
    process.exitCode = 1;
  },
);
