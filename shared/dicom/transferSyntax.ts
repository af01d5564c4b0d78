/**
 * Transfer syntax truth: the label a written file carries must describe its bytes. The data
 * set's encoding is checked by the parser; here, the pixel data's encapsulation against the
 * label, before anything is written and again on the output as re-parsed.
 */
import { ErrorCodes, PipelineError } from '../errors';
import { bufferReader } from './byteReader';
import { TransferSyntax } from './dataset';
import { HeaderLimits } from './limits';
import { PixelDataHeader, readHeader } from './parser';
import { Tags } from './tags';

const NATIVE: ReadonlySet<string> = new Set<string>([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);

/** DICOM-defined transfer syntaxes other than the native ones encapsulate their pixel data (PS3.5 A.4). */
export function pixelDataIsEncapsulated(transferSyntaxUid: string): boolean | undefined {
  if (NATIVE.has(transferSyntaxUid)) return false;
  // A private transfer syntax says nothing this code can check; it is passed on as declared.
  return transferSyntaxUid.startsWith('1.2.840.10008.1.2.') ? true : undefined;
}

/**
 * Throws PipelineError DICOM_TRANSFER_SYNTAX_MISMATCH when the pixel data's encoding
 * contradicts the transfer syntax: encapsulated (undefined length) pixel data under a native
 * syntax, or a defined length under an encapsulated one. Float and double pixel data are
 * always native. Pure.
 */
export function checkPixelEncapsulation(transferSyntaxUid: string, pixel: PixelDataHeader | undefined): void {
  if (!pixel) return;
  const encapsulated = pixel.length === undefined;
  const expected = pixel.tag === Tags.PixelData ? pixelDataIsEncapsulated(transferSyntaxUid) : false;
  if (expected === undefined || expected === encapsulated) return;
  throw new PipelineError(
    ErrorCodes.DICOM_TRANSFER_SYNTAX_MISMATCH,
    expected
      ? `the transfer syntax ${transferSyntaxUid} is encapsulated but the pixel data has a defined length`
      : `the transfer syntax ${transferSyntaxUid} is native but the pixel data is encapsulated`,
  );
}

/**
 * The gate's transfer syntax check: the output header and its pixel data element header,
 * re-parsed with the syntax they declare, must give exactly `declared` (one meta group, no
 * group 0002 in the data set) and the same pixel data element, encapsulated as the syntax
 * says. The fragments themselves are checked as they stream (parser.ts
 * encapsulatedPixelData: a basic offset table item, then at least one fragment).
 *
 * @throws PipelineError DICOM_TRANSFER_SYNTAX_MISMATCH, or the parser's DICOM_* codes when the
 *   output does not parse.
 */
export async function verifyOutputTransferSyntax(
  output: Buffer,
  declared: string,
  pixel: PixelDataHeader | undefined,
  limits: HeaderLimits,
): Promise<void> {
  const parsed = await readHeader(bufferReader(output), { ...limits, totalSize: undefined });
  const mismatch = (why: string) => new PipelineError(ErrorCodes.DICOM_TRANSFER_SYNTAX_MISMATCH, `output ${why}`);
  if (parsed.transferSyntaxUid !== declared) throw mismatch('declares another transfer syntax than the one chosen for it');
  for (const tag of parsed.dataset.keys()) if (tag >>> 16 === 0x0002) throw mismatch('holds file meta elements inside its data set');
  const got = parsed.pixelData;
  if (Boolean(got) !== Boolean(pixel) || (got && pixel && (got.tag !== pixel.tag || got.length !== pixel.length))) {
    throw mismatch('pixel data element differs from the source');
  }
  checkPixelEncapsulation(declared, got);
}
