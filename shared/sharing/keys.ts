/**
 * Per-agreement pseudonym domains. Each agreement de-identifies with its own key, derived from
 * the master de-identification key by HKDF (RFC 5869, SHA-256) with the agreement id as the
 * info: the partner's UIDs, pseudonyms and date shifts are then reproducible from the master
 * key and the agreement id alone (no lookup table), and two agreements (or an agreement and the
 * research catalog, keyed with the master key itself) share no derived value.
 */
import { hkdfSync } from 'node:crypto';

/** Fixed salt: domain separation from any other use of the master key. */
const SALT = Buffer.from('vna-sharing-agreement-key/v1');

/** The agreement's de-identification key (32 bytes). */
export function agreementKey(masterKey: Buffer, agreementId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, SALT, Buffer.from(`agreement:${agreementId}`, 'utf8'), 32));
}

/** Names the agreement's key in its files (De-identification Method) and manifests: the master key's id and the agreement. */
export function agreementKeyId(masterKeyId: string, agreementId: string): string {
  return `${masterKeyId}.${agreementId}`;
}
