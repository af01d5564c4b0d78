/** Events the pipeline publishes for automation downstream (research identifiers only). */
import { AzureKeyCredential, EventGridPublisherClient } from '@azure/eventgrid';
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';

import type { EventGridTopic } from '../config/settings';
import { fromServiceError } from '../errors';

export const INSTANCE_CATALOGED = 'VNA.Catalog.InstanceCataloged';

export interface InstanceCatalogedData {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  sopClassUid: string;
  modality: string;
  /** Name of the de-identified copy in the research container. */
  researchBlob: string;
  size: number;
}

export interface EventPublisher {
  /** Publishes one event; throws SERVICE_* when the topic cannot take it (the ingestion then retries). */
  instanceCataloged(data: InstanceCatalogedData, id: string): Promise<void>;
}

export const EXPORT_COMPLETED = 'VNA.Export.Completed';

/** A partner export that has ended: every instance written or failed, the manifest in place (partner identifiers only). */
export interface ExportCompletedData {
  exportId: string;
  agreementId: string;
  partnerId: string;
  done: number;
  failed: number;
  bytes: number;
  /** Blob names of the manifest in the destination. */
  manifest: { json: string; csv: string };
  keyId: string;
  profile: string;
}

export interface ExportEventPublisher {
  /** Publishes one event with a stable id (the export id: a repeat is the same event). Throws SERVICE_* when the topic cannot take it. */
  exportCompleted(data: ExportCompletedData, id: string): Promise<void>;
}

export const noopPublisher: EventPublisher & ExportEventPublisher = { instanceCataloged: async () => undefined, exportCompleted: async () => undefined };

export class EventGridPublisher implements EventPublisher, ExportEventPublisher {
  private readonly client: EventGridPublisherClient<'EventGrid'>;

  constructor(topic: EventGridTopic) {
    const credential = topic.key
      ? new AzureKeyCredential(topic.key)
      : topic.clientId
        ? new ManagedIdentityCredential({ clientId: topic.clientId })
        : new DefaultAzureCredential();
    this.client = new EventGridPublisherClient(topic.endpoint, 'EventGrid', credential, {
      allowInsecureConnection: topic.endpoint.startsWith('http:'),
    });
  }

  async instanceCataloged(data: InstanceCatalogedData, id: string): Promise<void> {
    try {
      await this.client.send([
        {
          id,
          eventType: INSTANCE_CATALOGED,
          subject: `/studies/${data.studyInstanceUid}/series/${data.seriesInstanceUid}/instances/${data.sopInstanceUid}`,
          dataVersion: '1.0',
          data,
        },
      ]);
    } catch (e) {
      throw fromServiceError(e, 'publishing an event');
    }
  }

  async exportCompleted(data: ExportCompletedData, id: string): Promise<void> {
    try {
      await this.client.send([{ id, eventType: EXPORT_COMPLETED, subject: `/agreements/${data.agreementId}/exports/${data.exportId}`, dataVersion: '1.0', data }]);
    } catch (e) {
      throw fromServiceError(e, 'publishing an event');
    }
  }
}
