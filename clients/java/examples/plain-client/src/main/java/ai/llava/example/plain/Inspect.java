package ai.llava.example.plain;

import ai.llava.client.Analysis;
import ai.llava.client.AnalyzeRequest;
import ai.llava.client.ChatDelta;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.client.LlavaException;
import ai.llava.client.Preset;
import com.fasterxml.jackson.databind.JsonNode;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

/**
 * Three questions about one photo with the plain client: free text, the qc-inspection preset mapped
 * to a record, and a streamed description.
 *
 * <pre>
 *   java ai.llava.example.plain.Inspect http://localhost:8080 photo.jpg
 * </pre>
 * LLAVA_API_KEY, when set, is sent as the API key.
 */
public final class Inspect {

    /** The qc-inspection preset's answer ({@code GET /api/v1/multimodal/presets} has its schema). */
    public record QcReport(String verdict, List<Defect> defects) {
    }

    public record Defect(String kind, String location) {
    }

    private Inspect() {
    }

    public static void main(String[] args) {
        if (args.length != 2) {
            System.err.println("usage: Inspect GATEWAY_URL IMAGE_FILE");
            System.exit(2);
        }
        try {
            run(args[0], System.getenv("LLAVA_API_KEY"), Path.of(args[1]), System.out);
        } catch (LlavaException e) {
            System.err.println(e.kind() + " (request " + e.requestId() + "): " + e.getMessage());
            System.exit(1);
        }
    }

    /** The three calls, their answers printed to {@code out}; the qc-inspection report returned. */
    public static QcReport run(String gatewayUrl, String apiKey, Path photoFile, PrintStream out) {
        LlavaClient llava = LlavaClient.builder().baseUrl(gatewayUrl).apiKey(apiKey).build();
        Image photo = Image.of(photoFile);

        Analysis<JsonNode> answer = llava.analyze(AnalyzeRequest.builder(photo).prompt("What's in this picture?")
                .maxTokens(48).build());
        out.println("answer (" + answer.status() + "): " + answer.result());

        QcReport report = llava.analyze(photo, Preset.QC_INSPECTION, QcReport.class).data();
        out.println("qc-inspection: " + report.verdict() + ", defects " + report.defects());

        out.print("streamed: ");
        try (Stream<ChatDelta> deltas = llava.chatStream(ChatRequest.builder().user("Describe it.", photo)
                .maxTokens(32).build())) {
            deltas.forEach(delta -> out.print(delta.content()));
        }
        out.println();
        return report;
    }
}
