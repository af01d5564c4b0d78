/**
 * Telemetry behind the project's own interface: counts, durations, bytes and failures by
 * code. Properties are limited to codes, statuses, modalities and research identifiers, so
 * nothing identifying can reach it. No-op without a connection string.
 */
import { appendFileSync } from 'node:fs';

export interface IngestionTelemetry {
  status: string;
  errorCode?: string;
  modality?: string;
  transferSyntaxUid?: string;
  durationMs: number;
  bytes: number;
}

export interface Telemetry {
  trackIngestion(t: IngestionTelemetry): void;
  trackMetric(name: string, value: number, properties?: Record<string, string>): void;
  trackFailure(code: string, operation: string): void;
  flush(): Promise<void>;
}

export const noopTelemetry: Telemetry = {
  trackIngestion: () => undefined,
  trackMetric: () => undefined,
  trackFailure: () => undefined,
  flush: async () => undefined,
};

/** Writes every record as a JSON line: for the local stack, and for tests that scan what is emitted. */
export class FileTelemetry implements Telemetry {
  constructor(private readonly path: string) {}
  private write(kind: string, body: object): void {
    appendFileSync(this.path, `${JSON.stringify({ kind, time: new Date().toISOString(), ...body })}\n`);
  }
  trackIngestion(t: IngestionTelemetry): void {
    this.write('ingestion', t);
  }
  trackMetric(name: string, value: number, properties?: Record<string, string>): void {
    this.write('metric', { name, value, properties });
  }
  trackFailure(code: string, operation: string): void {
    this.write('failure', { code, operation });
  }
  async flush(): Promise<void> {}
}

interface AppInsightsClient {
  trackEvent(e: { name: string; properties?: Record<string, unknown>; measurements?: Record<string, number> }): void;
  trackMetric(m: { name: string; value: number; properties?: Record<string, unknown> }): void;
  flush(): Promise<void> | void;
}

/** Application Insights, loaded only when a connection string is configured (its require costs ~0.5 s). */
export class AppInsightsTelemetry implements Telemetry {
  private readonly client: AppInsightsClient;

  constructor(connectionString: string) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const ai = require('applicationinsights') as {
      setup(cs: string): { setAutoCollectConsole(v: boolean): unknown; start(): unknown };
      defaultClient: AppInsightsClient;
    };
    const setup = ai.setup(connectionString);
    // Console output may carry what a dependency logged; only our own records are sent.
    setup.setAutoCollectConsole(false);
    setup.start();
    this.client = ai.defaultClient;
  }

  trackIngestion(t: IngestionTelemetry): void {
    this.client.trackEvent({
      name: 'Ingestion',
      properties: { status: t.status, errorCode: t.errorCode ?? '', modality: t.modality ?? '', transferSyntaxUid: t.transferSyntaxUid ?? '' },
      measurements: { durationMs: t.durationMs, bytes: t.bytes },
    });
  }
  trackMetric(name: string, value: number, properties?: Record<string, string>): void {
    this.client.trackMetric({ name, value, properties });
  }
  trackFailure(code: string, operation: string): void {
    this.client.trackEvent({ name: 'Failure', properties: { code, operation } });
  }
  async flush(): Promise<void> {
    await this.client.flush();
  }
}

/** Every sink createTelemetry made in this process: what flushTelemetry sends on app termination. */
const created = new Set<Telemetry>();

export function createTelemetry(options: { connectionString?: string; captureFile?: string }): Telemetry {
  let telemetry = noopTelemetry;
  if (options.connectionString) telemetry = new AppInsightsTelemetry(options.connectionString);
  else if (options.captureFile) telemetry = new FileTelemetry(options.captureFile);
  if (telemetry !== noopTelemetry) created.add(telemetry);
  return telemetry;
}

/**
 * Sends what every telemetry sink of this process still buffers (the app's appTerminate hook,
 * functions/appHooks.ts). Never throws: a sink that cannot flush is reported in the result.
 */
export async function flushTelemetry(): Promise<{ flushed: number; failed: number }> {
  const results = await Promise.allSettled([...created].map((t) => t.flush()));
  const failed = results.filter((r) => r.status === 'rejected').length;
  return { flushed: results.length - failed, failed };
}
