/**
 * koopnb's JupyterLab plugin: highlighting of %%pkmodel cells.
 * The result-card renderer is the separate MIME extension in `mime.ts`.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';

import { pkmodelHighlighting } from './highlight/extension';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'koopnb:pkmodel-highlighting',
  description: 'Highlights the model language in notebook cells that start with %%pkmodel.',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (_app: JupyterFrontEnd, registry: IEditorExtensionRegistry): void => {
    registry.addExtension({
      name: 'koopnb:pkmodel-highlighting',
      // %%pkmodel is a cell magic, so only cell (inline) editors take part.
      factory: options =>
        options.inline ? EditorExtensionRegistry.createImmutableExtension(pkmodelHighlighting) : null
    });
  }
};

export default plugin;
