// Type-checks the Grafana dashboards in dashboards/grafana/ against the
// dashboard model of @grafana/schema (`npm test` here: tsc --noEmit).
// The schema's string enums are widened to plain strings: a JSON file's
// strings are typed `string`, never a literal, so without widening every
// valid `"type": "timeseries"` would fail.
import type { Dashboard } from '@grafana/schema';

import address from '../../dashboards/grafana/address.json';
import meshOverview from '../../dashboards/grafana/mesh-overview.json';
import router from '../../dashboards/grafana/router.json';

type Widen<T> = T extends string
  ? string
  : T extends number
    ? number
    : T extends boolean
      ? boolean
      : T extends readonly (infer U)[]
        ? Widen<U>[]
        : T extends object
          ? { [K in keyof T]: Widen<T[K]> }
          : T;

export const dashboards: Widen<Dashboard>[] = [meshOverview, router, address];
