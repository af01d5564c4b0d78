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

export const INSTANCE_WITHDRAWN = 'VNA.Catalog.InstanceWithdrawn';

/** A research instance withdrawn because its source was deleted (research identifiers only). */
export interface InstanceWithdrawnData {
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
}

export interface EventPublisher {
  /** Publishes one event; throws SERVICE_* when the topic cannot take it (the ingestion then retries). */
  instanceCataloged(data: InstanceCatalogedData, id: string): Promise<void>;
  /**
   * Publishes one withdrawal; the id is derived from the deleted source version and the research
   * instance, so that a redelivered deletion publishes the same event. Throws SERVICE_*.
   */
  instanceWithdrawn(data: InstanceWithdrawnData, id: string): Promise<void>;
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

export const EXPORT_INSTANCE_WITHDRAWN = 'VNA.Export.InstanceWithdrawn';

/**
 * A file a partner holds in a destination we do not control must be deleted: its source was
 * deleted (partner identifiers only: the agreement's UIDs and the blob name in its container).
 */
export interface ExportInstanceWithdrawnData {
  agreementId: string;
  partnerId: string;
  /** Where the file is: `<account url>/<container>`. */
  destination: string;
  blob: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  sopInstanceUid: string;
  keyId: string;
}

export interface ExportEventPublisher {
  /** Publishes one event with a stable id (the export id: a repeat is the same event). Throws SERVICE_* when the topic cannot take it. */
  exportCompleted(data: ExportCompletedData, id: string): Promise<void>;
  /** Publishes one withdrawal notice with a stable id (`withdrawn:<agreement>:<partner SOP UID>`). Throws SERVICE_*. */
  exportInstanceWithdrawn(data: ExportInstanceWithdrawnData, id: string): Promise<void>;
}

export const noopPublisher: EventPublisher & ExportEventPublisher = {
  instanceCataloged: async () => undefined,
  instanceWithdrawn: async () => undefined,
  exportCompleted: async () => undefined,
  exportInstanceWithdrawn: async () => undefined,
};

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

  async instanceWithdrawn(data: InstanceWithdrawnData, id: string): Promise<void> {
    await this.send(id, INSTANCE_WITHDRAWN, `/studies/${data.studyInstanceUid}/series/${data.seriesInstanceUid}/instances/${data.sopInstanceUid}`, data);
  }

  async exportCompleted(data: ExportCompletedData, id: string): Promise<void> {
    await this.send(id, EXPORT_COMPLETED, `/agreements/${data.agreementId}/exports/${data.exportId}`, data);
  }

  async exportInstanceWithdrawn(data: ExportInstanceWithdrawnData, id: string): Promise<void> {
    await this.send(id, EXPORT_INSTANCE_WITHDRAWN, `/agreements/${data.agreementId}/files/${data.blob}`, data);
  }

  private async send(id: string, eventType: string, subject: string, data: object): Promise<void> {
    try {
      await this.client.send([{ id, eventType, subject, dataVersion: '1.0', data }]);
    } catch (e) {
      throw fromServiceError(e, 'publishing an event');
    }
  }
}
