import { SesError } from "./operation.js";
import type { Params } from "./operation.js";

/**
 * The Query protocol's form (`Rule.Actions.member.1.S3Action.BucketName=b`) as a tree: a
 * structure maps member names to subtrees, `member.N` makes a list, a leaf is the sent text.
 * botocore sends an empty list as `X=` (reference §1.2), which is a leaf "" where a list is read.
 */
type Node = { kind: "leaf"; value: string } | { kind: "branch"; children: Map<string, Node> };

function branch(): Node & { kind: "branch" } {
  return { kind: "branch", children: new Map() };
}

function insert(root: Node & { kind: "branch" }, key: string, value: string): void {
  const parts = key.split(".");
  let node: Node & { kind: "branch" } = root;
  for (const [index, part] of parts.entries()) {
    const last = index === parts.length - 1;
    const existing = node.children.get(part);
    if (last) {
      // A leaf never replaces a structure: `X=` next to `X.member.1=a` is the list, not "".
      if (!existing) node.children.set(part, { kind: "leaf", value });
      return;
    }
    if (existing?.kind === "branch") {
      node = existing;
    } else {
      const next = branch();
      node.children.set(part, next);
      node = next;
    }
  }
}

const join = (path: string, member: string) => (path === "" ? member : `${path}.${member}`);

/** List items in N order; a gap ends the list, as SDKs number items 1, 2, 3 without holes. */
function listItems(node: Node & { kind: "branch" }, path: string): { node: Node; path: string }[] {
  const members = node.children.get("member");
  if (!members || members.kind !== "branch") return [];
  const items: { node: Node; path: string }[] = [];
  for (let n = 1; members.children.has(String(n)); n++) {
    items.push({ node: members.children.get(String(n)) as Node, path: `${path}.member.${n}` });
  }
  return items;
}

class TreeParams implements Params {
  constructor(
    private readonly node: Node & { kind: "branch" },
    readonly path: string,
  ) {}

  has(member: string): boolean {
    return this.node.children.has(member);
  }

  members(): string[] {
    return [...this.node.children.keys()];
  }

  string(member: string): string | undefined {
    const child = this.node.children.get(member);
    if (child === undefined) return undefined;
    if (child.kind !== "leaf") throw invalid(join(this.path, member), "expected a value, not a structure");
    return child.value;
  }

  requiredString(member: string): string {
    const value = this.string(member);
    if (value === undefined) throw new SesError("MissingParameter", `The request must contain the parameter ${join(this.path, member)}`);
    return value;
  }

  boolean(member: string): boolean | undefined {
    const value = this.string(member);
    if (value === undefined) return undefined;
    const lower = value.toLowerCase();
    if (lower === "true") return true;
    if (lower === "false") return false;
    throw invalid(join(this.path, member), `expected true or false, got "${value}"`);
  }

  integer(member: string): number | undefined {
    const value = this.string(member);
    if (value === undefined) return undefined;
    if (!/^-?\d{1,15}$/.test(value)) throw invalid(join(this.path, member), `expected an integer, got "${value}"`);
    return Number(value);
  }

  timestamp(member: string): Date | undefined {
    const value = this.string(member);
    if (value === undefined) return undefined;
    const date = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$/i.test(value) ? new Date(value) : null;
    if (!date || Number.isNaN(date.getTime())) throw invalid(join(this.path, member), `expected an ISO 8601 time, got "${value}"`);
    return date;
  }

  struct(member: string): Params | undefined {
    const child = this.node.children.get(member);
    if (child === undefined) return undefined;
    if (child.kind === "leaf") {
      if (child.value === "") return undefined;
      throw invalid(join(this.path, member), "expected a structure");
    }
    return new TreeParams(child, join(this.path, member));
  }

  strings(member: string): string[] | undefined {
    return this.items(member)?.map((item) => {
      if (item.node.kind !== "leaf") throw invalid(item.path, "expected a value");
      return item.node.value;
    });
  }

  structs(member: string): Params[] | undefined {
    return this.items(member)?.map((item) => {
      if (item.node.kind !== "branch") throw invalid(item.path, "expected a structure");
      return new TreeParams(item.node, item.path);
    });
  }

  /** A list member's items; `X=` is the empty list, absent is undefined. */
  private items(member: string): { node: Node; path: string }[] | undefined {
    const child = this.node.children.get(member);
    if (child === undefined) return undefined;
    const path = join(this.path, member);
    if (child.kind === "leaf") {
      if (child.value === "") return [];
      throw invalid(path, "expected a list (member.N)");
    }
    return listItems(child, path);
  }
}

function invalid(path: string, problem: string): SesError {
  return new SesError("InvalidParameterValue", `${path}: ${problem}`);
}

/** The request's parameters; `Action`, `Version` and legacy signing fields are the listener's, not the operation's. */
export function parseQuery(form: URLSearchParams): Params {
  const root = branch();
  for (const [key, value] of form) {
    if (key === "" || key.startsWith(".") || key.endsWith(".") || key.includes("..")) {
      throw new SesError("MalformedQueryString", `Malformed parameter name: ${key}`, 404);
    }
    insert(root, key, value);
  }
  return new TreeParams(root, "");
}
