package ai.llava.spring;

import ai.llava.client.LlavaClient;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;

/**
 * The "llava" health indicator ({@code /actuator/health/llava}) when Actuator is there: Boot 4's
 * spring-boot-health or Boot 3's spring-boot-actuator, whichever the application runs on. Not part of
 * the liveness and readiness groups (Boot includes only its own state there), so a model restart
 * never takes the application out of its load balancer. {@code management.health.llava.enabled=false}
 * turns it off.
 */
@AutoConfiguration(after = LlavaAutoConfiguration.class)
@ConditionalOnBean(LlavaClient.class)
@ConditionalOnProperty(prefix = "management.health.llava", name = "enabled", matchIfMissing = true)
public class LlavaHealthAutoConfiguration {

    static final String BEAN = "llavaHealthIndicator";

    @Configuration(proxyBeanMethods = false)
    @ConditionalOnClass(name = "org.springframework.boot.health.contributor.HealthIndicator")
    static class Boot4 {

        @Bean(BEAN)
        @ConditionalOnMissingBean(name = BEAN)
        Boot4ModelHealthIndicator llavaHealthIndicator(LlavaClient client, LlavaProperties properties) {
            return new Boot4ModelHealthIndicator(new ModelHealthCheck(client, properties.getHealth()));
        }
    }

    @Configuration(proxyBeanMethods = false)
    @ConditionalOnClass(name = "org.springframework.boot.actuate.health.HealthIndicator")
    @ConditionalOnMissingClass("org.springframework.boot.health.contributor.HealthIndicator")
    static class Boot3 {

        @Bean(BEAN)
        @ConditionalOnMissingBean(name = BEAN)
        Boot3ModelHealthIndicator llavaHealthIndicator(LlavaClient client, LlavaProperties properties) {
            return new Boot3ModelHealthIndicator(new ModelHealthCheck(client, properties.getHealth()));
        }
    }
}
