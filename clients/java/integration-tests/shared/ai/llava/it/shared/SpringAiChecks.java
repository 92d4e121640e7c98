package ai.llava.it.shared;

import org.junit.jupiter.api.Test;
import org.springframework.ai.chat.client.AdvisorParams;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.chat.model.ChatResponse;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.core.io.ByteArrayResource;
import org.springframework.util.MimeTypeUtils;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Spring AI's OpenAI chat model against the gateway, the same on both lines. A subclass per line sets
 * spring.ai.openai.base-url in that line's form (1.x: the root, it appends /v1/chat/completions; 2.x:
 * with /v1, as its default https://api.openai.com/v1, it appends /chat/completions) and the model's
 * options in that line's property names (greedy, 12 tokens).
 */
public abstract class SpringAiChecks {

    private static final ByteArrayResource PHOTO = new ByteArrayResource(Photos.jpeg(320, 240));

    @Autowired
    protected ChatClient.Builder chatClients;

    /** The request with this many max tokens (the options' types differ between the lines). */
    protected abstract ChatClient.ChatClientRequestSpec withMaxTokens(ChatClient.ChatClientRequestSpec request,
                                                                      int maxTokens);

    private ChatClient.ChatClientRequestSpec askAboutThePhoto() {
        return chatClients.build().prompt().user(user -> user.text("What is in this picture?")
                .media(MimeTypeUtils.IMAGE_JPEG, PHOTO));
    }

    @Test
    void a_user_message_with_image_media_is_answered() {
        ChatResponse response = askAboutThePhoto().call().chatResponse();
        assertThat(response.getResult().getOutput().getText()).isNotBlank();
        assertThat(response.getMetadata().getUsage().getPromptTokens()).as("the image's tokens").isGreaterThan(500);
        assertThat(response.getMetadata().getModel()).isEqualTo("llava-demo");
    }

    @Test
    void the_stream_gives_the_same_greedy_answer() {
        String called = askAboutThePhoto().call().content();
        List<String> streamed = askAboutThePhoto().stream().content().collectList().block();
        assertThat(streamed).hasSizeGreaterThan(1);
        assertThat(String.join("", streamed)).isEqualTo(called);
    }

    @Test
    void entity_maps_a_schema_enforced_answer_to_a_record() {
        Verdict verdict = withMaxTokens(askAboutThePhoto(), 100)
                .advisors(AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT)
                .call().entity(Verdict.class);
        assertThat(verdict.verdict()).isNotNull();
        assertThat(verdict.severity()).isNotNull();
    }
}
