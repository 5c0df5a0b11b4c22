export type Json = Record<string, unknown>;

export const isObject = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * A small checker of a JSON document's fields that collects every problem with its path instead
 * of stopping at the first.
 */
export class FieldReader {
  readonly issues: string[] = [];

  object(value: unknown, path: string, allowed: readonly string[]): Json {
    if (value === undefined) return {};
    if (!isObject(value)) {
      this.issues.push(`${path}: expected an object`);
      return {};
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.issues.push(`${path}.${key}: unknown key (allowed: ${allowed.join(", ")})`);
    }
    return value;
  }

  string(value: unknown, path: string, pattern?: RegExp | ((text: string) => boolean), expected?: string): string | undefined {
    if (value === undefined) return undefined;
    const valid = (text: string) => (pattern === undefined ? true : typeof pattern === "function" ? pattern(text) : pattern.test(text));
    if (typeof value !== "string" || value === "" || !valid(value)) {
      this.issues.push(`${path}: expected ${expected ?? "a non-empty string"}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  oneOf<T extends string>(value: unknown, path: string, choices: readonly T[]): T | undefined {
    if (value === undefined) return undefined;
    if (!choices.includes(value as T)) {
      this.issues.push(`${path}: expected one of ${choices.map((c) => JSON.stringify(c)).join(", ")}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value as T;
  }

  boolean(value: unknown, path: string): boolean | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") {
      this.issues.push(`${path}: expected true or false, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  integer(value: unknown, path: string, min: number, max: number): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.issues.push(`${path}: expected a whole number from ${min} to ${max}, found ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  url(value: unknown, path: string, protocols: readonly string[]): string | undefined {
    const text = this.string(value, path);
    if (text === undefined) return undefined;
    try {
      const url = new URL(text);
      if (protocols.includes(url.protocol)) return text;
    } catch {
      // reported below
    }
    this.issues.push(`${path}: expected a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}, found ${JSON.stringify(text)}`);
    return undefined;
  }
}
