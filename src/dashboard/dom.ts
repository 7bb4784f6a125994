/**
 * The few DOM helpers the dashboard needs instead of a framework. Text goes
 * in as text (never as HTML): event payloads and task reasons are whatever
 * services sent.
 */

type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  attrs?: Record<string, string>;
  on?: { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) element.className = props.class;
  if (props.text !== undefined) element.textContent = props.text;
  if (props.title !== undefined) element.title = props.title;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  for (const [name, listener] of Object.entries(props.on ?? {})) element.addEventListener(name, listener as EventListener);
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

/** Sets text only when it changed, so that unchanged cells cost no layout. */
export function setText(element: Element, text: string): void {
  if (element.textContent !== text) element.textContent = text;
}

export function setAttr(element: Element, name: string, value: string): void {
  if (element.getAttribute(name) !== value) element.setAttribute(name, value);
}

/**
 * Makes `container`'s children one element per item, in order, reusing the
 * element of each key: rows keep their identity between refreshes, so a
 * button under the pointer is not replaced while it is being clicked.
 */
export function syncKeyed<T, E extends HTMLElement>(
  container: HTMLElement,
  items: readonly T[],
  key: (item: T) => string,
  create: (item: T) => E,
  update: (element: E, item: T) => void,
): void {
  const existing = new Map<string, E>();
  for (const child of Array.from(container.children)) {
    const childKey = (child as HTMLElement).dataset.key;
    if (childKey !== undefined) existing.set(childKey, child as E);
    else child.remove();
  }
  let cursor: Element | null = container.firstElementChild;
  for (const item of items) {
    const itemKey = key(item);
    let element = existing.get(itemKey);
    if (element) existing.delete(itemKey);
    else {
      element = create(item);
      element.dataset.key = itemKey;
    }
    update(element, item);
    if (element === cursor) cursor = cursor.nextElementSibling;
    else container.insertBefore(element, cursor);
  }
  for (const stale of existing.values()) stale.remove();
}

/**
 * Runs `render` on the next animation frame however often it is asked for,
 * and at most once per `minIntervalMs`: a busy bus must not make the page
 * redraw more often than anyone can read.
 */
export function renderScheduler(render: () => void, minIntervalMs: number): () => void {
  let pending = false;
  let lastAt = 0;
  const run = () => {
    requestAnimationFrame(() => {
      pending = false;
      lastAt = performance.now();
      render();
    });
  };
  return () => {
    if (pending) return;
    pending = true;
    const wait = lastAt + minIntervalMs - performance.now();
    if (wait > 0) window.setTimeout(run, wait);
    else run();
  };
}
