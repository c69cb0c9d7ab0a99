/**
 * koopnb's MIME renderer extensions: draws `application/vnd.koopnb.result+json`
 * outputs as result cards, and turns `application/vnd.koopnb.model-error+json`
 * outputs into an underline in the cell's editor. Both are safe for untrusted
 * notebooks because payload text only ever reaches the page through
 * textContent, SVG attributes and CodeMirror diagnostics.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { renderCard, renderInvalidCard } from './card/card';
import { RESULT_MIME_TYPE, ResultPayloadError, readResult } from './card/result';
import { modelErrorRendererFactory } from './errors/renderer';

/** An output area widget showing one koopnb result card. */
export class ResultCardRenderer extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('koopnb-result');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    let card: HTMLElement;
    try {
      card = renderCard(readResult(model.data[RESULT_MIME_TYPE]));
    } catch (error) {
      if (!(error instanceof ResultPayloadError)) {
        throw error;
      }
      card = renderInvalidCard(error.message);
    }
    this.node.replaceChildren(card);
  }
}

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [RESULT_MIME_TYPE],
  createRenderer: () => new ResultCardRenderer()
};

const resultCards: IRenderMime.IExtension = {
  id: 'koopnb:result-card',
  description: 'Renders koopnb results (value ± error, probability gauge, optimal dose) as cards.',
  rendererFactory,
  // Ahead of the text/html fallback (rank 50) that the Python side also sends.
  rank: 0,
  dataType: 'json'
};

const modelErrors: IRenderMime.IExtension = {
  id: 'koopnb:model-error',
  description: 'Underlines the mistake of a failed %%pkmodel cell in its editor.',
  rendererFactory: modelErrorRendererFactory,
  // Ahead of the empty text/plain the Python side sends for other front ends.
  rank: 0,
  dataType: 'json'
};

export default [resultCards, modelErrors];
