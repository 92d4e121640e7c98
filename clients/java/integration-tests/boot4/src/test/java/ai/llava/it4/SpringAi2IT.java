package ai.llava.it4;

import ai.llava.it.shared.SpringAiChecks;
import ai.llava.teststack.DemoStack;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.openai.OpenAiChatOptions;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Configuration;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

/** Spring AI 2.0 (on openai-java) with docs/java.md's settings: base-url with /v1, options directly under chat. */
@SpringBootTest(classes = SpringAi2IT.App.class, webEnvironment = SpringBootTest.WebEnvironment.NONE,
        properties = {"spring.ai.openai.api-key=it-key", "spring.ai.openai.chat.model=llava-demo",
                "spring.ai.openai.chat.temperature=0", "spring.ai.openai.chat.max-tokens=12"})
class SpringAi2IT extends SpringAiChecks {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("spring.ai.openai.base-url", () -> DemoStack.shared().gatewayUrl() + "/v1");
    }

    @Override
    protected ChatClient.ChatClientRequestSpec withMaxTokens(ChatClient.ChatClientRequestSpec request, int maxTokens) {
        return request.options(OpenAiChatOptions.builder().maxTokens(maxTokens));
    }
}
