package ai.llava.spring;

import ai.llava.client.LlavaClient;

/** Changes the starter's {@link LlavaClient} before it is built (an ObjectMapper, another retry policy, ...). */
@FunctionalInterface
public interface LlavaClientCustomizer {

    void customize(LlavaClient.Builder builder);
}
