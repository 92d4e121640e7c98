package ai.llava.client;

import java.util.Objects;
import java.util.regex.Pattern;

/**
 * A ready-made task of the gateway: its question and the JSON Schema of its answer
 * ({@link LlavaClient#presets()} lists them with their schemas). The built-in ones are
 * constants; a deployment's own ({@code PRESETS_FILE}) are named with {@link #named(String)}.
 */
public final class Preset {

    /** Customer service: {@code product}, {@code defect_type}, {@code severity}, {@code customer_reply}. */
    public static final Preset PRODUCT_DEFECT = new Preset("product-defect");
    /** Finance: {@code vendor}, {@code invoice_number}, {@code date}, {@code currency}, {@code line_items}, {@code total}. */
    public static final Preset INVOICE = new Preset("invoice");
    /** Factory QC: {@code verdict} (pass, fail) and {@code defects} ({@code kind}, {@code location}). */
    public static final Preset QC_INSPECTION = new Preset("qc-inspection");
    /** Anything: {@code caption}, {@code objects}, {@code text_seen}. */
    public static final Preset DESCRIBE = new Preset("describe");

    private static final Pattern NAME = Pattern.compile("[a-z0-9][a-z0-9-]{0,63}");

    private final String name;

    private Preset(String name) {
        this.name = name;
    }

    public static Preset named(String name) {
        Objects.requireNonNull(name, "name");
        if (!NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("a preset name is lower-case letters, digits and '-': " + name);
        }
        return new Preset(name);
    }

    public String name() {
        return name;
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof Preset preset && preset.name.equals(name);
    }

    @Override
    public int hashCode() {
        return name.hashCode();
    }

    @Override
    public String toString() {
        return name;
    }
}
