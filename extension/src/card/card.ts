/**
 * The result card: a koopnb answer with its uncertainty, built with DOM calls
 * and textContent only (payload text is never parsed as HTML).
 *
 * Layout, top to bottom: title and kind; metric and window; value ± error with
 * an error bar; probability gauge; optimal dose and regimen; ranked regimens;
 * warnings; a 'Details' fold with method, evaluations, elapsed time and convergence.
 */
import {
  formatElapsed,
  formatEvaluations,
  formatNumber,
  formatPercent,
  formatValueAndError,
  formatWindow
} from './format';
import { IKoopnbResult, IRankedRegimen } from './result';
import { errorBar, probabilityGauge } from './svg';

/** What the value of each kind of result is, in the user's words. */
const VALUE_LABELS: Record<IKoopnbResult['kind'], string> = {
  expectation: 'Expected value',
  probability: 'Probability',
  dose: 'Objective at the optimum',
  regimen: 'Objective at the optimum',
  posterior: 'Value'
};

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Build the card for a checked result. */
export function renderCard(result: IKoopnbResult): HTMLElement {
  const card = element('div', `koopnb-card koopnb-kind-${result.kind}`);
  card.appendChild(header(result));
  if (result.metric !== undefined || result.window !== undefined) {
    card.appendChild(target(result));
  }
  if (result.value !== undefined) {
    card.appendChild(valueRow(result, result.value));
  }
  const gaugeProbability = result.probability ?? (result.kind === 'probability' ? result.value : undefined);
  if (gaugeProbability !== undefined) {
    // The error estimate belongs to `value`; it bands the gauge only when the gauge shows that value.
    const band = gaugeProbability === result.value ? result.error : undefined;
    card.appendChild(gauge(gaugeProbability, band));
  }
  if (result.dose !== undefined || result.regimen !== undefined) {
    card.appendChild(dosing(result));
  }
  if (result.rows !== undefined && result.rows.length > 0) {
    card.appendChild(rankedTable(result.rows));
  }
  if (result.warnings !== undefined && result.warnings.length > 0) {
    card.appendChild(warnings(result.warnings));
  }
  card.appendChild(footer(result));
  return card;
}

/** A card that says, in one sentence, why a payload could not be drawn. */
export function renderInvalidCard(message: string): HTMLElement {
  const card = element('div', 'koopnb-card koopnb-card-invalid');
  card.appendChild(element('div', 'koopnb-title', 'koopnb result could not be shown'));
  card.appendChild(element('div', 'koopnb-warning', message));
  return card;
}

function header(result: IKoopnbResult): HTMLElement {
  const row = element('div', 'koopnb-card-header');
  row.appendChild(element('span', 'koopnb-title', result.title ?? VALUE_LABELS[result.kind]));
  row.appendChild(element('span', 'koopnb-kind', result.kind));
  return row;
}

function target(result: IKoopnbResult): HTMLElement {
  const parts: string[] = [];
  if (result.metric !== undefined) {
    parts.push(result.metric);
  }
  if (result.window !== undefined) {
    parts.push(`in ${formatWindow(result.window)}`);
  }
  return element('div', 'koopnb-target', parts.join(' '));
}

function valueRow(result: IKoopnbResult, value: number): HTMLElement {
  const row = element('div', 'koopnb-value-row');
  row.appendChild(element('span', 'koopnb-value-label', result.value_label ?? VALUE_LABELS[result.kind]));
  const error = result.error;
  if (error === undefined) {
    row.appendChild(element('span', 'koopnb-value', result.value_text ?? formatNumber(value)));
    row.appendChild(element('span', 'koopnb-error koopnb-error-unknown', 'error not estimated'));
    return row;
  }
  // koopnb's own texts when the payload carries them (one formatter for the Python and the lab cards).
  const [valueText, errorText] =
    result.value_text !== undefined
      ? [result.value_text, result.error_text ?? '']
      : formatValueAndError(value, error).map((text, index) => (index === 0 ? text : `± ${text}`));
  row.appendChild(element('span', 'koopnb-value', valueText));
  const errorNode = element('span', 'koopnb-error', errorText);
  if (value !== 0) {
    errorNode.title = `relative error ${formatNumber(Math.abs(error / value))}`;
  }
  row.appendChild(errorNode);
  if (Number.isFinite(value) && Number.isFinite(error)) {
    const isProbability = result.kind === 'probability' || value === result.probability;
    row.appendChild(errorBar(value, Math.abs(error), isProbability));
  }
  return row;
}

function gauge(probability: number, error?: number): HTMLElement {
  const box = element('div', 'koopnb-gauge');
  box.appendChild(probabilityGauge(probability, error));
  box.appendChild(element('div', 'koopnb-gauge-caption', 'probability of the target'));
  return box;
}

function dosing(result: IKoopnbResult): HTMLElement {
  const box = element('div', 'koopnb-dosing');
  if (result.dose !== undefined) {
    const unit = result.unit === undefined ? '' : ` ${result.unit}`;
    const label = result.kind === 'dose' ? 'Optimal dose' : 'Dose';
    box.appendChild(element('div', 'koopnb-dose', `${label}: ${formatNumber(result.dose)}${unit}`));
  }
  if (result.regimen !== undefined) {
    const label = result.kind === 'dose' || result.kind === 'regimen' ? 'Best regimen' : 'Regimen';
    box.appendChild(element('div', 'koopnb-regimen', `${label}: ${result.regimen}`));
  }
  return box;
}

function rankedTable(rows: IRankedRegimen[]): HTMLElement {
  const table = element('table', 'koopnb-rows');
  const head = table.createTHead().insertRow();
  for (const name of ['#', 'Regimen', 'Probability', '± error']) {
    head.appendChild(element('th', '', name));
  }
  const body = table.createTBody();
  rows.forEach((row, index) => {
    const [probability, error] = percentages(row);
    const tr = body.insertRow();
    tr.appendChild(element('td', 'koopnb-rank', String(index + 1)));
    tr.appendChild(element('td', 'koopnb-row-regimen', row.regimen ?? ''));
    tr.appendChild(element('td', 'koopnb-row-probability', probability));
    tr.appendChild(element('td', 'koopnb-row-error', error));
  });
  return table;
}

/** A row's probability and error as percentages, the probability rounded to the error's digits. */
function percentages(row: IRankedRegimen): [string, string] {
  if (row.probability === undefined) {
    return ['', row.error === undefined ? '' : `${formatNumber(100 * Math.abs(row.error))}%`];
  }
  if (row.error === undefined) {
    return [formatPercent(row.probability), ''];
  }
  const [probability, error] = formatValueAndError(100 * row.probability, 100 * Math.abs(row.error));
  return [`${probability}%`, `${error}%`];
}

function warnings(messages: string[]): HTMLElement {
  const list = element('ul', 'koopnb-warnings');
  for (const message of messages) {
    list.appendChild(element('li', 'koopnb-warning', message));
  }
  return list;
}

/** Method, evaluations, time and convergence, folded: they are for whoever checks the number. */
function footer(result: IKoopnbResult): HTMLElement {
  const fold = element('details', 'koopnb-details');
  fold.appendChild(element('summary', 'koopnb-details-summary', 'Details'));
  const row = element('div', 'koopnb-footer');
  fold.appendChild(row);
  if (result.method !== undefined) {
    row.appendChild(element('span', 'koopnb-method', result.method));
  }
  if (result.n_evals !== undefined) {
    row.appendChild(element('span', 'koopnb-evals', formatEvaluations(result.n_evals)));
  }
  if (result.elapsed !== undefined) {
    row.appendChild(element('span', 'koopnb-elapsed', formatElapsed(result.elapsed)));
  }
  if (result.converged === true) {
    row.appendChild(element('span', 'koopnb-badge koopnb-converged', 'converged'));
  }
  if (result.converged !== false) {
    return fold;
  }
  // A number that did not converge must say so where it is read, not inside the fold.
  const box = element('div', 'koopnb-footer-box');
  box.appendChild(element('span', 'koopnb-badge koopnb-not-converged', 'not converged'));
  box.appendChild(fold);
  return box;
}
