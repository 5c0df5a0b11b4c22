/** A configuration that cannot be used: every problem found, each naming its field. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly issues: string[],
  ) {
    super(issues.map((issue) => `${source}: ${issue}`).join("\n"));
    this.name = "ConfigError";
  }
}
