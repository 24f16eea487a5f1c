// Elements built from data. Text is always set as text, never parsed as markup, so a
// name that carries markup shows as the characters it is.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.setAttribute('class', value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/'}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, as h. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A two-column list of facts: [[label, value], ...]; a null value shows as '-'. */
export function facts(rows, label) {
  return h('dl', {class: 'facts', 'aria-label': label},
    rows.map(([name, value]) => [h('dt', {}, name), h('dd', {}, value ?? '-')]));
}

/** A table: headers and rows of cells (text or elements). */
export function table(headers, rows, caption) {
  return h('table', {class: 'grid'},
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((name) => h('th', {scope: 'col'}, name)))),
    h('tbody', {}, rows.length
      ? rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell ?? '-'))))
      : h('tr', {}, h('td', {colspan: headers.length, class: 'empty'}, 'none'))));
}

export function badge(text, kind) {
  return h('span', {class: `badge ${kind || ''}`}, text);
}

export function replaceChildren(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
}
