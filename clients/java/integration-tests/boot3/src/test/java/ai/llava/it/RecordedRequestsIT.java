package ai.llava.it;

import ai.llava.client.ChatDelta;
import ai.llava.client.ChatRequest;
import ai.llava.client.Image;
import ai.llava.client.LlavaClient;
import ai.llava.it.shared.Photos;
import ai.llava.it.shared.Verdict;
import ai.llava.teststack.Recorder;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionContentPart;
import com.openai.models.chat.completions.ChatCompletionContentPartImage;
import com.openai.models.chat.completions.ChatCompletionContentPartText;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionStreamOptions;
import dev.langchain4j.data.message.ImageContent;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ResponseFormat;
import dev.langchain4j.model.chat.request.ResponseFormatType;
import dev.langchain4j.model.chat.request.json.JsonObjectSchema;
import dev.langchain4j.model.chat.request.json.JsonSchema;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import org.junit.jupiter.api.Test;
import org.springframework.ai.chat.client.AdvisorParams;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.openai.OpenAiChatOptions;
import org.springframework.ai.openai.api.OpenAiApi;
import org.springframework.core.io.ByteArrayResource;
import org.springframework.util.MimeTypeUtils;

import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * What Spring AI 1.1, LangChain4j, openai-java and llava-client send, as tests/recorded/ holds it for
 * the Python suite's replays (test_gateway_as_documented.py). Each client is set up as docs/java.md
 * says, with the recorder as its gateway.
 */
class RecordedRequestsIT {

    static final byte[] PHOTO = Photos.jpeg(64, 48);
    static final String QUESTION = "What's in this picture?";

    // ------------------------------------------------------------------ Spring AI 1.1

    static ChatClient springAi(String baseUrl, boolean streamUsage) {
        OpenAiApi api = OpenAiApi.builder().baseUrl(baseUrl).apiKey("unused").build();
        OpenAiChatOptions options = OpenAiChatOptions.builder().model("llava-demo").temperature(0.2).maxTokens(512)
                .streamUsage(streamUsage).build();
        return ChatClient.create(org.springframework.ai.openai.OpenAiChatModel.builder().openAiApi(api).defaultOptions(options).build());
    }

    @Test
    void spring_ai_1() {
        ByteArrayResource photo = new ByteArrayResource(PHOTO);
        assertThat(Recorder.record("spring-ai-1-chat-image", "Spring AI 1.1.2 OpenAiChatModel (spring-ai-openai), "
                + "base-url = the gateway's root; a user message with image Media", url ->
                springAi(url, false).prompt().user(u -> u.text(QUESTION).media(MimeTypeUtils.IMAGE_JPEG, photo))
                        .call().content()).path("path").asText()).isEqualTo("/v1/chat/completions");
        Recorder.record("spring-ai-1-stream-usage", "Spring AI 1.1.2, ChatClient.stream() with "
                + "spring.ai.openai.chat.options.stream-usage=true", url ->
                springAi(url, true).prompt().system("You describe product photos.")
                        .user(u -> u.text("Describe it.").media(MimeTypeUtils.IMAGE_JPEG, photo))
                        .stream().content().collectList().block());
        Recorder.record("spring-ai-1-entity", "Spring AI 1.1.2, .entity(Verdict.class) with "
                + "AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT (response_format json_schema)", url ->
                springAi(url, false).prompt().user(u -> u.text("Inspect this part.")
                                .media(MimeTypeUtils.IMAGE_JPEG, photo))
                        .advisors(AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT).call().entity(Verdict.class));
    }

    // ------------------------------------------------------------------ LangChain4j

    static UserMessage askAboutThePhoto(String text) {
        return UserMessage.from(TextContent.from(text),
                ImageContent.from(Base64.getEncoder().encodeToString(PHOTO), "image/jpeg"));
    }

    @Test
    void langchain4j() throws Exception {
        Recorder.record("langchain4j-chat-image", "LangChain4j 1.19.0 OpenAiChatModel, baseUrl = the gateway + /v1, "
                + "UserMessage with TextContent + ImageContent (base64)", url ->
                OpenAiChatModel.builder().baseUrl(url + "/v1").apiKey("unused").modelName("llava-demo").temperature(0.2)
                        .maxTokens(512).build().chat(askAboutThePhoto(QUESTION)));
        Recorder.record("langchain4j-json-schema", "LangChain4j 1.19.0 OpenAiChatModel with strictJsonSchema(true) "
                + "and a JSON-schema response format", url ->
                OpenAiChatModel.builder().baseUrl(url + "/v1").apiKey("unused").modelName("llava-demo")
                        .strictJsonSchema(true).build()
                        .chat(dev.langchain4j.model.chat.request.ChatRequest.builder()
                                .messages(askAboutThePhoto("Inspect this part."))
                                .responseFormat(ResponseFormat.builder().type(ResponseFormatType.JSON)
                                        .jsonSchema(JsonSchema.builder().name("verdict").rootElement(
                                                JsonObjectSchema.builder()
                                                        .addEnumProperty("verdict", List.of("pass", "fail"))
                                                        .addBooleanProperty("needsReview")
                                                        .required("verdict", "needsReview")
                                                        .additionalProperties(false).build()).build())
                                        .build()).build()));
        AtomicReference<CompletableFuture<ChatResponse>> streamed = new AtomicReference<>();
        Recorder.record("langchain4j-stream-usage", "LangChain4j 1.19.0 OpenAiStreamingChatModel, baseUrl = the "
                + "gateway + /v1", url -> streamed.set(LangChain4jIT.stream(OpenAiStreamingChatModel.builder()
                        .baseUrl(url + "/v1").apiKey("unused").modelName("llava-demo").temperature(0.2).maxTokens(512)
                        .build(), List.of(SystemMessage.from("provide a concise answer"), askAboutThePhoto("Describe it.")),
                new StringBuilder())));
        assertThat(streamed.get().get(30, TimeUnit.SECONDS).aiMessage().text()).isEqualTo("ok");
    }

    // ------------------------------------------------------------------ openai-java

    static OpenAIClient openAi(String url) {
        return OpenAIOkHttpClient.builder().baseUrl(url + "/v1").apiKey("unused").maxRetries(0).build();
    }

    static ChatCompletionCreateParams.Builder openAiQuestion(String text) {
        String image = "data:image/jpeg;base64," + Base64.getEncoder().encodeToString(PHOTO);
        return ChatCompletionCreateParams.builder().model("llava-demo").addUserMessageOfArrayOfContentParts(List.of(
                ChatCompletionContentPart.ofText(ChatCompletionContentPartText.builder().text(text).build()),
                ChatCompletionContentPart.ofImageUrl(ChatCompletionContentPartImage.builder()
                        .imageUrl(ChatCompletionContentPartImage.ImageUrl.builder().url(image).build()).build())));
    }

    @Test
    void openai_java() {
        Recorder.record("openai-java-chat-image", "openai-java 4.105.0, baseUrl = the gateway + /v1, a text part and "
                + "an image_url part", url ->
                openAi(url).chat().completions().create(openAiQuestion(QUESTION).maxCompletionTokens(512).build()));
        Recorder.record("openai-java-stream-usage", "openai-java 4.105.0 createStreaming with "
                + "stream_options.include_usage", url -> {
            try (StreamResponse<ChatCompletionChunk> stream = openAi(url).chat().completions().createStreaming(
                    openAiQuestion("Describe it.").streamOptions(ChatCompletionStreamOptions.builder().includeUsage(true)
                            .build()).build())) {
                stream.stream().forEach(chunk -> { });
            }
        });
        Recorder.record("openai-java-structured", "openai-java 4.105.0 structured outputs: "
                + "responseFormat(Verdict.class)", url ->
                openAi(url).chat().completions().create(openAiQuestion("Inspect this part.")
                        .responseFormat(Verdict.class).build()));
    }

    // ------------------------------------------------------------------ llava-client

    @Test
    void llava_client() {
        Recorder.record("llava-client-chat-image", "llava-client chat(): a text part and the image as a data: URL",
                url -> LlavaClient.create(url).chat(ChatRequest.builder().user(QUESTION, Image.of(PHOTO))
                        .maxTokens(64).temperature(0).build()));
        Recorder.record("llava-client-stream-usage", "llava-client chatStream(): stream with include_usage", url -> {
            try (Stream<ChatDelta> deltas = LlavaClient.create(url).chatStream(ChatRequest.builder()
                    .system("You describe product photos.").user("Describe it.", Image.of(PHOTO)).build())) {
                deltas.forEach(delta -> { });
            }
        });
    }
}
