package ai.llava.it4;

import ai.llava.teststack.DemoStack;
import org.junit.jupiter.api.Test;
import org.springframework.ai.chat.client.AdvisorParams;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.chat.model.ChatResponse;
import org.springframework.ai.openai.OpenAiChatOptions;
import org.springframework.beans.factory.annotation.Autowired;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.io.ByteArrayResource;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;
import org.springframework.util.MimeTypeUtils;

import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Spring AI 2.0 (on the openai-java SDK) configured as docs/java.md says: the gateway's root as
 * base-url (2.x appends /chat/completions, which the gateway serves without /v1 too), the model's name.
 */
@SpringBootTest(classes = SpringAi2IT.App.class, webEnvironment = SpringBootTest.WebEnvironment.NONE,
        properties = {"spring.ai.openai.api-key=it-key", "spring.ai.openai.chat.model=llava-demo",
                "spring.ai.openai.chat.temperature=0", "spring.ai.openai.chat.max-tokens=12"})
class SpringAi2IT {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("spring.ai.openai.base-url", () -> DemoStack.shared().gatewayUrl());
    }

    static final ByteArrayResource PHOTO = new ByteArrayResource(Photos.jpeg(320, 240));

    @Autowired
    ChatClient.Builder chatClients;

    ChatClient.ChatClientRequestSpec askAboutThePhoto() {
        return chatClients.build().prompt().user(user -> user.text("What is in this picture?")
                .media(MimeTypeUtils.IMAGE_JPEG, PHOTO));
    }

    @Test
    void a_user_message_with_image_media_is_answered() {
        ChatResponse response = askAboutThePhoto().call().chatResponse();
        assertThat(response.getResult().getOutput().getText()).isNotBlank();
        assertThat(response.getMetadata().getUsage().getPromptTokens()).as("the image's tokens").isGreaterThan(500);
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
        Photos.Verdict verdict = askAboutThePhoto()
                .advisors(AdvisorParams.ENABLE_NATIVE_STRUCTURED_OUTPUT)
                .options(OpenAiChatOptions.builder().maxTokens(100))
                .call().entity(Photos.Verdict.class);
        assertThat(verdict.verdict()).isNotNull();
    }
}
