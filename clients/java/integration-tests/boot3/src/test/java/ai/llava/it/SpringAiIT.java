package ai.llava.it;

import ai.llava.it.shared.SpringAiChecks;
import ai.llava.teststack.DemoStack;
import org.springframework.ai.chat.client.ChatClient;
import org.springframework.ai.openai.OpenAiChatOptions;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.test.context.SpringBootTest;
import org.springframework.context.annotation.Configuration;
import org.springframework.test.context.DynamicPropertyRegistry;
import org.springframework.test.context.DynamicPropertySource;

/** Spring AI 1.1 (spring-ai-starter-model-openai) with docs/java.md's settings: options under chat.options. */
@SpringBootTest(classes = SpringAiIT.App.class, webEnvironment = SpringBootTest.WebEnvironment.NONE,
        properties = {"spring.ai.openai.api-key=it-key", "spring.ai.openai.chat.options.model=llava-demo",
                "spring.ai.openai.chat.options.temperature=0", "spring.ai.openai.chat.options.max-tokens=12"})
class SpringAiIT extends SpringAiChecks {

    @Configuration(proxyBeanMethods = false)
    @EnableAutoConfiguration
    static class App {
    }

    @DynamicPropertySource
    static void gateway(DynamicPropertyRegistry registry) {
        registry.add("spring.ai.openai.base-url", () -> DemoStack.shared().gatewayUrl());
    }

    @Override
    protected ChatClient.ChatClientRequestSpec withMaxTokens(ChatClient.ChatClientRequestSpec request, int maxTokens) {
        return request.options(OpenAiChatOptions.builder().maxTokens(maxTokens).build());
    }
}
