/**
 * The columnar writer over DuckDB (`@duckdb/node-api`): rows are appended into staging tables
 * of a database file in a temporary folder, and `finish` copies each table to Parquet files
 * partitioned hive style by modality and year (`COPY ... PARTITION_BY`, zstd, row groups of
 * DuckDB's default 122,880 rows). DuckDB's buffer manager holds at most `memoryLimitMb` and
 * spills the rest to that folder, so memory does not grow with the catalog; the disk does.
 * Why DuckDB rather than a pure-JS writer: docs/analytics.md.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

import { type DuckDBAppender, type DuckDBConnection, DuckDBInstance, LIST, VARCHAR } from '@duckdb/node-api';

import { ErrorCodes, PipelineError } from '../errors';
import type { ColumnarWriter, WrittenFile } from './snapshot';
import { type Column, PARTITION_COLUMNS, type Row, SCHEMAS, type TableName, TABLES } from './tables';

export interface DuckDbWriterOptions {
  /** DuckDB's memory limit (its buffer pool; the rest spills to the temporary folder). */
  memoryLimitMb?: number;
  /** Parent of the temporary folder; default the OS's. */
  tempDir?: string;
  threads?: number;
}

function wrap(e: unknown, what: string): PipelineError {
  return new PipelineError(ErrorCodes.INTERNAL, `parquet writer: ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

function quote(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function appendCell(appender: DuckDBAppender, column: Column, value: Row[string] | undefined): void {
  if (value === null || value === undefined) {
    appender.appendNull();
    return;
  }
  switch (column.type) {
    case 'VARCHAR[]':
      appender.appendList(Array.isArray(value) ? [...(value as readonly string[])] : [String(value)], LIST(VARCHAR));
      return;
    case 'INTEGER':
    case 'BIGINT':
      appender.appendDouble(Number(value));
      return;
    default:
      // DATE and TIMESTAMP are cast by the appender from their ISO text.
      appender.appendVarchar(String(value));
  }
}

export class DuckDbColumnarWriter implements ColumnarWriter {
  private closed = false;
  private finished = false;

  private constructor(
    private readonly folder: string,
    private readonly instance: DuckDBInstance,
    private readonly connection: DuckDBConnection,
    private readonly appenders: Map<TableName, DuckDBAppender>,
  ) {}

  /** Creates the temporary folder and the staging tables. Throws PipelineError INTERNAL when DuckDB cannot start. */
  static async open(options: DuckDbWriterOptions = {}): Promise<DuckDbColumnarWriter> {
    const folder = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'vna-parquet-'));
    try {
      const instance = await DuckDBInstance.create(path.join(folder, 'staging.duckdb'), {
        memory_limit: `${options.memoryLimitMb ?? 256}MB`,
        threads: String(options.threads ?? 2),
        temp_directory: path.join(folder, 'spill'),
        preserve_insertion_order: 'false',
      });
      const connection = await instance.connect();
      const appenders = new Map<TableName, DuckDBAppender>();
      for (const table of TABLES) {
        const columns = SCHEMAS[table].map((c) => `${quote(c.name)} ${c.type}`).join(', ');
        await connection.run(`CREATE TABLE ${quote(table)} (${columns})`);
        appenders.set(table, await connection.createAppender(table));
      }
      return new DuckDbColumnarWriter(folder, instance, connection, appenders);
    } catch (e) {
      await rm(folder, { recursive: true, force: true });
      throw wrap(e, 'cannot open the staging database');
    }
  }

  async append(table: TableName, row: Row): Promise<void> {
    const appender = this.appenders.get(table);
    if (!appender || this.finished) throw new PipelineError(ErrorCodes.INTERNAL, 'parquet writer: append after finish');
    try {
      for (const column of SCHEMAS[table]) appendCell(appender, column, row[column.name]);
      appender.endRow();
    } catch (e) {
      throw wrap(e, `cannot append a row to ${table}`);
    }
  }

  async finish(): Promise<WrittenFile[]> {
    this.finished = true;
    const out: WrittenFile[] = [];
    try {
      for (const [, appender] of this.appenders) appender.closeSync();
      for (const table of TABLES) {
        const target = path.join(this.folder, 'out', table);
        await mkdir(path.dirname(target), { recursive: true });
        const reader = await this.connection.runAndReadAll(
          `COPY ${quote(table)} TO ${literal(target)} (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (${PARTITION_COLUMNS.map(quote).join(', ')}), RETURN_STATS)`,
        );
        for (const stat of reader.getRowObjectsJson()) {
          const localPath = String(stat.filename);
          const relativePath = path.relative(target, localPath).split(path.sep).join('/');
          out.push({ table, relativePath, localPath, rows: Number(stat.count), bytes: Number(stat.file_size_bytes), partition: partitionOf(relativePath) });
        }
      }
    } catch (e) {
      throw wrap(e, 'cannot write the Parquet files');
    }
    return out.sort((a, b) => (a.table + a.relativePath < b.table + b.relativePath ? -1 : 1));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.finished) for (const [, appender] of this.appenders) appender.closeSync();
    } catch {
      // Closing after a failed append: nothing to keep.
    }
    this.connection.closeSync();
    this.instance.closeSync();
    await rm(this.folder, { recursive: true, force: true });
  }
}

/** The hive partition values of a relative path (`modality=CT/year=2019/data_0.parquet`). */
export function partitionOf(relativePath: string): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const part of relativePath.split('/').slice(0, -1)) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const value = decodeURIComponent(part.slice(i + 1));
    out[part.slice(0, i)] = value === '__HIVE_DEFAULT_PARTITION__' ? null : value;
  }
  return out;
}
