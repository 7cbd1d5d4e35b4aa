/**
 * The browser entry, bundled by `deno bundle` (islands/build.ts): hydrates
 * each server-rendered `[data-island]` element with its component and props.
 */
import { h, hydrate } from "preact";
import type { FunctionComponent } from "preact";
import AdminPanel from "./AdminPanel.tsx";
import JobList from "./JobList.tsx";
import UploadForm from "./UploadForm.tsx";

// deno-lint-ignore no-explicit-any
const islands: Record<string, FunctionComponent<any>> = {
  AdminPanel,
  JobList,
  UploadForm,
};

for (const el of document.querySelectorAll<HTMLElement>("[data-island]")) {
  const component = islands[el.dataset.island ?? ""];
  if (component) {
    hydrate(h(component, JSON.parse(el.dataset.props ?? "{}")), el);
  }
}
