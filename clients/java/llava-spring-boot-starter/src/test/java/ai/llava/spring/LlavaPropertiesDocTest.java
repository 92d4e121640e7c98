package ai.llava.spring;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/** docs/java.md's properties table says what the configuration metadata (from LlavaProperties) says. */
class LlavaPropertiesDocTest {

    private static final Pattern ROW = Pattern.compile("^\\| `([a-z.-]+)` \\|\\s*`?([^`|]*?)`?\\s*\\|",
            Pattern.MULTILINE);

    @Test
    void every_property_is_documented_with_its_default() throws IOException {
        Map<String, String> metadata = new LinkedHashMap<>();
        JsonNode json = new ObjectMapper().readTree(getClass().getResource("/META-INF/spring-configuration-metadata.json"));
        json.path("properties").forEach(p -> metadata.put(p.path("name").asText(), p.path("defaultValue").asText("")));

        Path doc = Path.of("../../../docs/java.md");
        String text = Files.readString(doc);
        String table = text.substring(text.indexOf("<!-- properties:"));
        Map<String, String> documented = new LinkedHashMap<>();
        Matcher row = ROW.matcher(table.substring(0, table.indexOf("\n\n")));
        while (row.find()) {
            documented.put(row.group(1), row.group(2).strip());
        }
        assertThat(documented).isEqualTo(metadata);
    }
}
