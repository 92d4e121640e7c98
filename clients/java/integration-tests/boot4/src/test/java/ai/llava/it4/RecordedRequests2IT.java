package ai.llava.it4;

import ai.llava.it.shared.Photos;
import ai.llava.it.shared.Verdict;
import ai.llava.teststack.Recorder;
import org.junit.jupiter.api.Test;
import org.springframework.ai.chat.client.AdvisorParams;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.openai.OpenAiChatModel;
import org.springframework.ai.openai.OpenAiChatOptions;
import org.springframework.core.io.ByteArrayResource;
import org.springframework.util.MimeTypeUtils;

import static org.assertj.core.api.Assertions.assertThat;

/** What Spring AI 2.0 sends, as tests/recorded/ holds it for the Python suite's replays. */
class RecordedRequests2IT {

    static final ByteArrayResource PHOTO = new ByteArrayResource(Photos.jpeg(64, 48));

    static ChatClient springAi(String baseUrl, boolean streamUsage) {
        OpenAiChatOptions.Builder options = OpenAiChatOptions.builder().baseUrl(baseUrl + "/v1").apiKey("unused");
        options.model("llava-demo").temperature(0.2).maxTokens(512).streamUsage(streamUsage);
        return ChatClient.create(OpenAiChatModel.builder().options(options.build()).build());
    }

    @Test
    void spring_ai_2() {
        assertThat(Recorder.record("spring-ai-2-chat-image", "Spring AI 2.0.1 OpenAiChatModel (on openai-java), "
                + "base-url = the gateway + /v1; a user message with image Media", url ->
                springAi(url, false).prompt().user(u -> u.text("What's in this picture?")
                        .media(MimeTypeUtils.IMAGE_JPEG, PHOTO)).call().content()).path("path").asText())
                .isEqualTo("/v1/chat/completions");
        Recorder.record("spring-ai-2-stream-usage", "Spring AI 2.0.1, ChatClient.stream() with "
                + "spring.ai.openai.chat.stream-usage=true", url ->
                springAi(url, true).prompt().system("You describe product photos.")
                        .user(u -> u.text("Describe it.").media(MimeTypeUtils.IMAGE_JPEG, PHOTO))
                        .stream().content().collectList().block());
        Recorder.record("spring-ai-2-entity", "Spring AI 2.0.1, .entity(Verdict.class) with "
                + "AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT (response_format json_schema)", url ->
                springAi(url, false).prompt().user(u -> u.text("Inspect this part.")
                                .media(MimeTypeUtils.IMAGE_JPEG, PHOTO))
                        .advisors(AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT).call().entity(Verdict.class));
    }
}
