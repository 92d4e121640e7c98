package ai.llava.it;

import ai.llava.it.shared.Photos;
import ai.llava.it.shared.Verdict;
import ai.llava.teststack.DemoStack;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionContentPart;
import com.openai.models.chat.completions.ChatCompletionContentPartImage;
import com.openai.models.chat.completions.ChatCompletionContentPartText;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.StructuredChatCompletion;
import com.openai.models.chat.completions.StructuredChatCompletionCreateParams;
import org.junit.jupiter.api.Test;

import java.util.Base64;
import java.util.List;
import java.util.stream.Collectors;

import static org.assertj.core.api.Assertions.assertThat;

/** The official OpenAI Java SDK with the base URL docs/java.md gives. */
class OpenAiJavaIT {

    static final OpenAIClient OPENAI = OpenAIOkHttpClient.builder().baseUrl(DemoStack.shared().gatewayUrl() + "/v1")
            .apiKey("it-key").build();

    static List<ChatCompletionContentPart> askAboutThePhoto() {
        String url = "data:image/jpeg;base64," + Base64.getEncoder().encodeToString(Photos.jpeg(320, 240));
        return List.of(
                ChatCompletionContentPart.ofText(ChatCompletionContentPartText.builder()
                        .text("What is in this picture?").build()),
                ChatCompletionContentPart.ofImageUrl(ChatCompletionContentPartImage.builder()
                        .imageUrl(ChatCompletionContentPartImage.ImageUrl.builder().url(url).build()).build()));
    }

    @Test
    void chat_with_an_image_and_its_stream_agree() {
        ChatCompletionCreateParams params = ChatCompletionCreateParams.builder().model("llava-demo")
                .addUserMessageOfArrayOfContentParts(askAboutThePhoto()).maxCompletionTokens(12).temperature(0.0)
                .build();
        ChatCompletion completion = OPENAI.chat().completions().create(params);
        String content = completion.choices().get(0).message().content().orElseThrow();
        assertThat(content).isNotBlank();
        assertThat(completion.usage().orElseThrow().promptTokens()).as("the image's tokens").isGreaterThan(500);

        try (StreamResponse<ChatCompletionChunk> stream = OPENAI.chat().completions().createStreaming(params)) {
            String streamed = stream.stream().flatMap(chunk -> chunk.choices().stream())
                    .flatMap(choice -> choice.delta().content().stream()).collect(Collectors.joining());
            assertThat(streamed).isEqualTo(content);
        }
    }

    @Test
    void structured_outputs_map_to_a_record() {
        StructuredChatCompletionCreateParams<Verdict> params = ChatCompletionCreateParams.builder().model("llava-demo")
                .addUserMessageOfArrayOfContentParts(askAboutThePhoto()).maxCompletionTokens(100)
                .responseFormat(Verdict.class).build();
        StructuredChatCompletion<Verdict> completion = OPENAI.chat().completions().create(params);
        Verdict verdict = completion.choices().get(0).message().content().orElseThrow();
        assertThat(verdict.verdict()).isNotNull();
        assertThat(verdict.severity()).isNotNull();
    }
}
