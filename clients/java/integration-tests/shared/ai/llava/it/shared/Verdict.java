package ai.llava.it.shared;

/**
 * An answer shape every library can ask for as a JSON Schema: enums and a boolean only, so that
 * any answer the gateway allows fits a small max-tokens (the demo model's words are random).
 */
public record Verdict(Outcome verdict, Severity severity, boolean needsReview) {

    /** Lower-case, as the JSON says them. */
    public enum Outcome { pass, fail }

    public enum Severity { none, minor, major }

    /** The same schema written out, for clients that take one as text. */
    public static final String SCHEMA = """
            {"type": "object", "additionalProperties": false, "required": ["verdict", "severity", "needsReview"],
             "properties": {"verdict": {"type": "string", "enum": ["pass", "fail"]},
                            "severity": {"type": "string", "enum": ["none", "minor", "major"]},
                            "needsReview": {"type": "boolean"}}}""";
}
