package ai.llava.it;

import ai.llava.it.shared.Photos;
import ai.llava.it.shared.Verdict;
import ai.llava.teststack.DemoStack;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.ImageContent;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ResponseFormat;
import dev.langchain4j.model.chat.request.ResponseFormatType;
import dev.langchain4j.model.chat.request.json.JsonObjectSchema;
import dev.langchain4j.model.chat.request.json.JsonSchema;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import org.junit.jupiter.api.Test;

import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** LangChain4j's OpenAI models with the base URL and settings docs/java.md gives. */
class LangChain4jIT {

    static final String BASE_URL = DemoStack.shared().gatewayUrl() + "/v1";
    static final String PHOTO = Base64.getEncoder().encodeToString(Photos.jpeg(320, 240));

    static UserMessage askAboutThePhoto() {
        return UserMessage.from(TextContent.from("What is in this picture?"), ImageContent.from(PHOTO, "image/jpeg"));
    }

    static final ChatModel MODEL = OpenAiChatModel.builder().baseUrl(BASE_URL).apiKey("it-key").modelName("llava-demo")
            .temperature(0.0).maxTokens(12).strictJsonSchema(true).build();

    /** A streamed chat: its partial texts appended to {@code partial}, its complete response when done. */
    static CompletableFuture<ChatResponse> stream(StreamingChatModel model, List<ChatMessage> messages,
                                                  StringBuilder partial) {
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        model.chat(messages, new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(String text) {
                partial.append(text);
            }

            @Override
            public void onCompleteResponse(ChatResponse complete) {
                done.complete(complete);
            }

            @Override
            public void onError(Throwable error) {
                done.completeExceptionally(error);
            }
        });
        return done;
    }

    @Test
    void image_content_is_answered_and_streamed_alike() throws Exception {
        ChatResponse response = MODEL.chat(askAboutThePhoto());
        assertThat(response.aiMessage().text()).isNotBlank();
        assertThat(response.tokenUsage().inputTokenCount()).as("the image's tokens").isGreaterThan(500);

        StreamingChatModel streaming = OpenAiStreamingChatModel.builder().baseUrl(BASE_URL).apiKey("it-key")
                .modelName("llava-demo").temperature(0.0).maxTokens(12).build();
        StringBuilder partial = new StringBuilder();
        ChatResponse streamed = stream(streaming, List.of(askAboutThePhoto()), partial).get(60, TimeUnit.SECONDS);
        assertThat(partial.toString()).isEqualTo(streamed.aiMessage().text()).isEqualTo(response.aiMessage().text());
    }

    @Test
    void a_json_schema_response_format_is_followed() throws Exception {
        JsonSchema schema = JsonSchema.builder().name("verdict").rootElement(JsonObjectSchema.builder()
                .addEnumProperty("verdict", List.of("pass", "fail"))
                .addEnumProperty("severity", List.of("none", "minor", "major"))
                .addBooleanProperty("needsReview")
                .required("verdict", "severity", "needsReview")
                .additionalProperties(false)
                .build()).build();
        ChatResponse response = MODEL.chat(ChatRequest.builder().messages(askAboutThePhoto()).maxOutputTokens(100)
                .responseFormat(ResponseFormat.builder().type(ResponseFormatType.JSON).jsonSchema(schema).build())
                .build());
        Verdict verdict = new ObjectMapper().readValue(response.aiMessage().text(), Verdict.class);
        assertThat(verdict.verdict()).isNotNull();
        assertThat(verdict.severity()).isNotNull();
    }
}
