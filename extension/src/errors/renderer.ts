/**
 * The renderer of `application/vnd.koopnb.model-error+json` outputs. It draws
 * nothing itself (the UsageError text below it says what is wrong); it
 * underlines the mistake in the editor of the cell that owns the output, and
 * takes the underline away when the output goes, i.e. when the cell is run
 * again (a run that fails again displays a new output, which marks again).
 */
import { CodeMirrorEditor } from '@jupyterlab/codemirror';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { EditorView } from '@codemirror/view';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { MODEL_ERROR_MIME_TYPE, ModelErrorPayload, readModelError } from './payload';
import { showModelError } from './underline';

/** The renderer that last marked each editor: an older renderer going away leaves a newer mark alone. */
const markedBy = new WeakMap<EditorView, ModelErrorRenderer>();

export class ModelErrorRenderer extends Widget implements IRenderMime.IRenderer {
  private error: ModelErrorPayload | null = null;
  private view: EditorView | null = null;

  constructor() {
    super();
    this.addClass('koopnb-model-error');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.error = readModelError(model.data[MODEL_ERROR_MIME_TYPE]);
    if (this.isAttached) {
      this.mark();
    }
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    if (this.view && markedBy.get(this.view) === this) {
      markedBy.delete(this.view);
      showModelError(this.view, null);
    }
    super.dispose();
  }

  /** The output area sets this widget's parents before attaching it, so the cell is known here. */
  protected onAfterAttach(message: Message): void {
    super.onAfterAttach(message);
    this.mark();
  }

  private mark(): void {
    const view = this.cellEditor();
    if (!view || !this.error || markedBy.get(view) === this) {
      return;
    }
    this.view = view;
    markedBy.set(view, this);
    showModelError(view, this.error);
  }

  /** The CodeMirror view of the cell this output belongs to: the nearest ancestor widget with an editor. */
  private cellEditor(): EditorView | null {
    for (let widget = this.parent; widget; widget = widget.parent) {
      const editor = (widget as Widget & { editor?: unknown }).editor;
      if (editor instanceof CodeMirrorEditor) {
        return editor.editor;
      }
    }
    return null;
  }
}

export const modelErrorRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MODEL_ERROR_MIME_TYPE],
  createRenderer: () => new ModelErrorRenderer()
};
