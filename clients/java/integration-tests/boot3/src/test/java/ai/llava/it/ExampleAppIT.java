package ai.llava.it;

import ai.llava.example.inspection.InspectionApplication;
import ai.llava.example.plain.Inspect;
import ai.llava.it.shared.Photos;
import ai.llava.it.shared.QcReport;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.web.context.WebServerApplicationContext;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.core.io.ByteArrayResource;
import org.springframework.http.MediaType;
import org.springframework.util.LinkedMultiValueMap;
import org.springframework.util.MultiValueMap;
import org.springframework.web.client.RestClient;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/** The two examples a newcomer runs, run the same way against the demo stack. */
class ExampleAppIT {

    static final DemoStack STACK = DemoStack.shared();

    /** `mvn spring-boot:run` with the gateway's URL and key given as a newcomer would, on any free port. */
    @Test
    void the_spring_boot_example_inspects_an_uploaded_photo() {
        try (ConfigurableApplicationContext app = SpringApplication.run(InspectionApplication.class,
                "--server.port=0", "--llava.base-url=" + STACK.gatewayUrl(), "--llava.api-key=it-key")) {
            RestClient http = RestClient.create("http://127.0.0.1:"
                    + ((WebServerApplicationContext) app).getWebServer().getPort());

            JsonNode inspection = http.post().uri("/inspections").contentType(MediaType.MULTIPART_FORM_DATA)
                    .body(photo(Photos.jpeg(400, 300))).retrieve().body(JsonNode.class);
            assertThat(inspection.path("verdict").asText()).isIn("pass", "fail");
            assertThat(inspection.path("defects").isArray()).isTrue();
            assertThat(inspection.path("requestId").asText()).isNotBlank();

            JsonNode refused = http.post().uri("/inspections").contentType(MediaType.MULTIPART_FORM_DATA)
                    .body(photo("a text file".getBytes(StandardCharsets.UTF_8)))
                    .exchange((request, response) -> {
                        assertThat(response.getStatusCode().value()).isEqualTo(400);
                        return response.bodyTo(JsonNode.class);
                    });
            assertThat(refused.path("detail").asText()).contains("not a recognised image");

            JsonNode health = http.get().uri("/actuator/health/llava").retrieve().body(JsonNode.class);
            assertThat(health.path("status").asText()).isEqualTo("UP");
        }
    }

    @Test
    void the_plain_example_prints_three_answers(@TempDir Path dir) throws IOException {
        Path photo = Files.write(dir.resolve("part.jpg"), Photos.jpeg(320, 240));
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Inspect.QcReport report = Inspect.run(STACK.gatewayUrl(), "it-key", photo,
                new PrintStream(printed, true, StandardCharsets.UTF_8));

        assertThat(report.verdict()).isIn("pass", "fail");
        assertThat(printed.toString(StandardCharsets.UTF_8)).containsPattern("answer \\(SUCCESS\\): .+")
                .contains("qc-inspection: " + report.verdict()).containsPattern("streamed: .+");
    }

    private static MultiValueMap<String, Object> photo(byte[] bytes) {
        MultiValueMap<String, Object> form = new LinkedMultiValueMap<>();
        form.add("photo", new ByteArrayResource(bytes) {
            @Override
            public String getFilename() {
                return "part.jpg";
            }
        });
        return form;
    }
}
