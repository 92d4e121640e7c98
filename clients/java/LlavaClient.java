import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.UUID;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A small client of the LLaVA service using only the JDK 17 HttpClient, with its
 * default settings (HTTP/2 preferred: over http:// it offers an h2c upgrade, which
 * the gateway answers as plain HTTP/1.1).
 *
 * <pre>
 *   javac -d out clients/java/LlavaClient.java
 *   java -cp out LlavaClient http://localhost:8080 photo.jpg "What's in this picture?"
 *   java -cp out LlavaClient http://localhost:8080/v1 photo.jpg "What's in this picture?"
 * </pre>
 * LLAVA_API_KEY, when set, is sent as {@code Authorization: Bearer}.
 * Calls the native multipart API (free text, then the qc-inspection preset), lists the models, then asks the same question
 * through the OpenAI-compatible chat completions API with the image as a data URL.
 * The base URL is an OpenAI base URL, with or without /v1 (the gateway serves both):
 * like the OpenAI SDKs, the client appends /models and /chat/completions to it; the
 * native API is at the gateway's root.
 */
public final class LlavaClient {
    private final HttpClient http = HttpClient.newHttpClient();
    private final String openAiBase;
    private final String root;
    private final String apiKey = System.getenv("LLAVA_API_KEY");

    LlavaClient(String baseUrl) {
        this.openAiBase = baseUrl.replaceAll("/+$", "");
        this.root = openAiBase.replaceAll("/v1$", "");
    }

    /** POST /api/v1/multimodal/analyze: multipart parts `image` and `prompt`. */
    String analyze(byte[] image, String fileName, String prompt, int maxTokens) throws IOException, InterruptedException {
        return multipart(image, fileName, "prompt", prompt, "?max-tokens=" + maxTokens);
    }

    /**
     * POST /api/v1/multimodal/analyze with {@code preset} (GET /api/v1/multimodal/presets lists them): the answer's
     * {@code data} is JSON that follows the preset's schema, e.g. for "qc-inspection"
     * {@code {"verdict": "fail", "defects": [{"kind": "scratch", "location": "top edge"}]}}. A Spring client maps
     * it to a record with Jackson (README, "Structured answers").
     */
    String analyzePreset(byte[] image, String fileName, String preset) throws IOException, InterruptedException {
        return multipart(image, fileName, "preset", preset, "");
    }

    private String multipart(byte[] image, String fileName, String field, String value, String query)
            throws IOException, InterruptedException {
        String boundary = "----llava" + UUID.randomUUID();
        List<byte[]> body = new ArrayList<>();
        body.add(("--" + boundary + "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"" + fileName
                + "\"\r\nContent-Type: application/octet-stream\r\n\r\n").getBytes(StandardCharsets.UTF_8));
        body.add(image);
        body.add(("\r\n--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + field + "\"\r\n\r\n" + value
                + "\r\n--" + boundary + "--\r\n").getBytes(StandardCharsets.UTF_8));
        HttpRequest request = request(root + "/api/v1/multimodal/analyze" + query)
                .header("Content-Type", "multipart/form-data; boundary=" + boundary)
                .POST(HttpRequest.BodyPublishers.ofByteArrays(body)).build();
        return send(request);
    }

    /** GET {base}/models: the first model id. */
    String firstModel() throws IOException, InterruptedException {
        String models = send(request(openAiBase + "/models").GET().build());
        Matcher id = Pattern.compile("\"id\"\\s*:\\s*\"([^\"]+)\"").matcher(models);
        if (!id.find()) {
            throw new IOException("no model listed: " + models);
        }
        return id.group(1);
    }

    /** POST {base}/chat/completions with a text part and the image as a data: URL. */
    String chat(String model, byte[] image, String prompt, int maxTokens) throws IOException, InterruptedException {
        String dataUrl = "data:image/jpeg;base64," + Base64.getEncoder().encodeToString(image);
        String json = "{\"model\":\"" + escape(model) + "\",\"max_tokens\":" + maxTokens + ",\"temperature\":0,"
                + "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"" + escape(prompt)
                + "\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"" + dataUrl + "\"}}]}]}";
        HttpRequest request = request(openAiBase + "/chat/completions").header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(json)).build();
        return send(request);
    }

    private HttpRequest.Builder request(String url) {
        HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(120));
        if (apiKey != null && !apiKey.isEmpty()) {
            builder.header("Authorization", "Bearer " + apiKey);
        }
        return builder;
    }

    private String send(HttpRequest request) throws IOException, InterruptedException {
        HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() != 200) {
            throw new IOException(request.method() + " " + request.uri().getPath() + " answered "
                    + response.statusCode() + " over " + response.version() + ": " + response.body());
        }
        return response.body();
    }

    private static String escape(String text) {
        return text.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: java LlavaClient BASE_URL IMAGE_FILE [PROMPT]");
            System.exit(2);
        }
        LlavaClient client = new LlavaClient(args[0]);
        Path imagePath = Path.of(args[1]);
        byte[] image = Files.readAllBytes(imagePath);
        String prompt = args.length > 2 ? args[2] : "What's in this picture?";
        try {
            System.out.println("analyze: " + client.analyze(image, imagePath.getFileName().toString(), prompt, 16));
            System.out.println("preset: " + client.analyzePreset(image, imagePath.getFileName().toString(),
                    "qc-inspection"));
            String model = client.firstModel();
            System.out.println("model: " + model);
            System.out.println("chat: " + client.chat(model, image, prompt, 16));
        } catch (IOException e) {
            System.err.println("failed: " + e.getMessage());
            System.exit(1);
        }
    }
}
