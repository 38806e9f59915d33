// Moving between the app's pages without loading a page.

import { h } from "./dom";

export type Params = Record<string, string>;

let render: () => Promise<void> = async () => {};
let flash: HTMLElement | null = null;

/** Registers what draws the page for the current path. */
export function onNavigate(renderer: () => Promise<void>): void {
  render = renderer;
}

/** The message left for this page by the one before, once. */
export function takeFlash(): HTMLElement | null {
  const message = flash;
  flash = null;
  return message;
}

/** Goes to an app path, optionally with a message for the page that comes next. */
export function navigate(path: string, message?: HTMLElement): void {
  flash = message ?? null;
  history.pushState(null, "", path);
  void render();
}

/** An in-app link (no page load). */
export function link(path: string, text: string, attributes: Record<string, string> = {}): HTMLElement {
  return h("a", {
    href: path,
    ...attributes,
    onclick: (event: Event) => {
      const click = event as MouseEvent;
      if (click.ctrlKey || click.metaKey || click.shiftKey || click.button !== 0) return;
      event.preventDefault();
      navigate(path);
    },
  }, text);
}

