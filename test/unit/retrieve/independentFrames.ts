/**
 * Frames as an independent reader extracts them: pydicom (Debian's python3-pydicom, with
 * numpy) reads a research copy and prints the SHA-256 of each frame. Encapsulated frames come
 * from pydicom's own fragment walk (generate_pixel_data_frame: its basic offset table, one
 * fragment per frame, or the end-of-image markers); native frames from its PixelData by frame
 * size; one-bit frames unpacked bit by bit with numpy and packed again from bit 0. Throws,
 * saying what to install, when no python3 with pydicom is found: never a silent skip.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRIPT = `
import sys, json, hashlib
import pydicom
from pydicom.encaps import generate_pixel_data_frame
out = []
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    ts = ds.file_meta.TransferSyntaxUID
    n = int(ds.get('NumberOfFrames', 1) or 1)
    sha = lambda b: hashlib.sha256(b).hexdigest()
    if ts.is_compressed:
        frames = [sha(f) for f in generate_pixel_data_frame(ds.PixelData, n)]
    else:
        data = ds.PixelData
        pixels = ds.Rows * ds.Columns * ds.SamplesPerPixel
        if ds.BitsAllocated == 1:
            import numpy as np
            bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder='little')
            frames = [sha(np.packbits(bits[i * pixels:(i + 1) * pixels], bitorder='little').tobytes()) for i in range(n)]
        else:
            size = pixels * ds.BitsAllocated // 8
            frames = [sha(data[i * size:(i + 1) * size]) for i in range(n)]
    out.append(frames)
print(json.dumps(out))
`;

/** Interpreters tried in turn: the one on PATH, then Debian's (where apt-get install python3-pydicom puts pydicom). */
const PYTHONS = ['python3', '/usr/bin/python3'];

let python: string | undefined;

function pythonWithPydicom(): string {
  if (python) return python;
  for (const p of PYTHONS) {
    try {
      execFileSync(p, ['-c', 'import pydicom, numpy'], { stdio: 'ignore' });
      return (python = p);
    } catch {
      // the next one
    }
  }
  throw new Error('the independent frame check needs pydicom and numpy: apt-get install -y python3-pydicom');
}

/** SHA-256 of each frame of each file (given as bytes), as pydicom extracts them. */
export function independentFrameHashes(files: Buffer[]): string[][] {
  const dir = mkdtempSync(join(tmpdir(), 'frames-'));
  try {
    const paths = files.map((f, i) => {
      const p = join(dir, `${i}.dcm`);
      writeFileSync(p, f);
      return p;
    });
    return JSON.parse(execFileSync(pythonWithPydicom(), ['-c', SCRIPT, ...paths], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })) as string[][];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}
