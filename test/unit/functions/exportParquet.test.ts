/** The export's timer function called as the host calls it: a bad setting fails the run with one message naming it, before anything is read or written. */
import { InvocationContext, type Timer } from '@azure/functions';

import { exportParquet } from '../../../functions/exportParquet';
import { ErrorCodes } from '../../../shared/errors';

const timer: Timer = { isPastDue: false, schedule: { adjustForDST: true }, scheduleStatus: { last: '', next: '', lastUpdated: '' } };

test('given a malformed analytics container name and memory limit, then the timer run fails with CONFIG_INVALID naming both', async () => {
  const saved = { ...process.env };
  try {
    Object.assign(process.env, { SourceStorage: 'UseDevelopmentStorage=true', CosmosDb: 'AccountEndpoint=http://127.0.0.1:1/;AccountKey=eA==;', ANALYTICS_CONTAINER: 'Not_A_Container', PARQUET_EXPORT_MEMORY_MB: '1' });
    const context = new InvocationContext({ functionName: 'exportParquet', invocationId: 'i1', logHandler: () => undefined });
    await expect(exportParquet(timer, context)).rejects.toMatchObject({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringMatching(/ANALYTICS_CONTAINER.*PARQUET_EXPORT_MEMORY_MB|PARQUET_EXPORT_MEMORY_MB.*ANALYTICS_CONTAINER/) });
  } finally {
    process.env = saved;
  }
});
