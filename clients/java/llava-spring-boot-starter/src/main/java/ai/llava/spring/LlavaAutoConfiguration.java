package ai.llava.spring;

import ai.llava.client.CallObserver;
import ai.llava.client.LlavaClient;
import ai.llava.client.RetryPolicy;
import io.micrometer.observation.ObservationRegistry;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.http.client.JdkClientHttpRequestFactory;
import org.springframework.web.client.RestClient;

import java.net.http.HttpClient;

/**
 * A {@link LlavaClient} bean from {@code llava.*} ({@link LlavaProperties}), its requests on the
 * application's {@link RestClient.Builder} (Boot's, with its observations and customizers) and a
 * request factory of its own: the gateway's answers take seconds to minutes, longer than a general
 * client's timeouts suit. {@link LlavaClientCustomizer} beans change the rest.
 */
@AutoConfiguration(afterName = {
        "org.springframework.boot.autoconfigure.web.client.RestClientAutoConfiguration",        // Boot 3
        "org.springframework.boot.restclient.autoconfigure.RestClientAutoConfiguration",        // Boot 4
        "org.springframework.boot.actuate.autoconfigure.observation.ObservationAutoConfiguration",
        "org.springframework.boot.micrometer.observation.autoconfigure.ObservationAutoConfiguration"})
@ConditionalOnClass(RestClient.class)
@EnableConfigurationProperties(LlavaProperties.class)
public class LlavaAutoConfiguration {

    @Bean
    @ConditionalOnMissingBean
    public LlavaClient llavaClient(LlavaProperties properties, ObjectProvider<RestClient.Builder> restClientBuilder,
                                   ObjectProvider<CallObserver> observer,
                                   ObjectProvider<LlavaClientCustomizer> customizers) {
        // HTTP/1.1: the gateway speaks nothing else; the JDK's default would offer h2c on every connection.
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(properties.getConnectTimeout()).followRedirects(HttpClient.Redirect.NEVER).build();
        JdkClientHttpRequestFactory requestFactory = new JdkClientHttpRequestFactory(http);
        requestFactory.setReadTimeout(properties.getTimeout());
        RestClient restClient = restClientBuilder.getIfAvailable(RestClient::builder).requestFactory(requestFactory)
                .build();
        LlavaProperties.Retry retry = properties.getRetry();
        LlavaClient.Builder builder = LlavaClient.builder()
                .baseUrl(properties.getBaseUrl())
                .apiKey(properties.getApiKey())
                .connectTimeout(properties.getConnectTimeout())
                .timeout(properties.getTimeout())
                .retry(new RetryPolicy(retry.getMaxAttempts(), retry.getDeadline(), retry.getInitialBackoff(),
                        retry.getMaxBackoff()))
                .transport(new RestClientTransport(restClient))
                .observer(observer.getIfAvailable(() -> CallObserver.NONE));
        customizers.orderedStream().forEach(customizer -> customizer.customize(builder));
        return builder.build();
    }

    @Configuration(proxyBeanMethods = false)
    @ConditionalOnClass(ObservationRegistry.class)
    static class Observations {

        @Bean
        @ConditionalOnMissingBean(CallObserver.class)
        @ConditionalOnBean(ObservationRegistry.class)
        MicrometerCallObserver llavaCallObserver(ObservationRegistry registry) {
            return new MicrometerCallObserver(registry);
        }
    }
}
